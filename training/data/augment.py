"""Batched augmentation as tensor ops on the training device (no per-image Python work)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) 0..255 → float (B, C, H, W), (x/255 − mean) / std; mean/std (C,)."""
    x = images.to(torch.float32).div_(255.0)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


def random_crop(
    x: torch.Tensor, pad: int, generator: torch.Generator | None = None, mode: str = "reflect"
) -> torch.Tensor:
    """Random translation by up to ±pad pixels per sample (pad, then crop back to H×W).

    x: float (B, C, H, W). One gather for the whole batch: row/col index grids (B, H) and
    (B, W) pick each sample's window out of the padded (B, C, H+2p, W+2p) tensor.
    """
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indices (B,1,1), (B,H,1), (B,1,W) broadcast to (B,H,W); the sliced channel dim
    # goes last → (B, H, W, C), so permute back to (B, C, H, W).
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Horizontal flip of a random half of the batch; x (B, C, H, W)."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def flip_parity(index: torch.Tensor, seed: int) -> torch.Tensor:
    """(B,) long split indices → (B,) bool: a fixed pseudo-random half of the split (a
    multiplicative hash of index and seed, so any subset of indices gets the same bits)."""
    h = (index.long() * 2_654_435_761 + seed * 40_503 + 12_345) % 4_294_967_296
    return ((h >> 16) & 1).bool()


def alternate_flip(x: torch.Tensor, index: torch.Tensor, epoch: int, seed: int) -> torch.Tensor:
    """Flip image i of the split iff parity(i) differs from the epoch's parity, so each image
    alternates between its two orientations from one epoch to the next.

    x (B, C, H, W) holds the split's images `index` (B,).
    """
    flip = (flip_parity(index, seed) ^ bool(epoch % 2)).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(
    x: torch.Tensor, pad: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop (reflect padding) then horizontal flip; x float (B, C, H, W)."""
    x = random_crop(x, pad, generator)
    return random_flip(x, generator) if flip else x
