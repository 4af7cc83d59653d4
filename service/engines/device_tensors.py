"""Tensor helpers of the stepper: batched read-back, host row indices, trailing-dim padding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def read_back(tensors: list[Tensor]) -> list[np.ndarray]:
    """Every tensor on the host with one device→host copy (one wait); float64 keeps float32
    scores and integer counts exact."""
    if not tensors:
        return []
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors]).cpu().numpy()
    sizes = np.cumsum([t.numel() for t in tensors])[:-1]
    return np.split(flat, sizes)


def host_index(rows: np.ndarray | Sequence[int], device: torch.device) -> Tensor:
    """Host row numbers as an index tensor on `device`, copied without waiting on the device."""
    idx = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    if device.type == "cuda":
        return idx.pin_memory().to(device, non_blocking=True)
    return idx.to(device)


def per_row(mask: Tensor, like: Tensor) -> Tensor:
    """A (n,) mask viewed as (n, 1, ...) so it broadcasts over `like`'s rows."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def widest_trailing(a: Tensor, b: Tensor) -> tuple[int, ...]:
    """The larger of a's and b's sizes in each trailing dimension (rows excluded)."""
    return tuple(max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True))


def fit_trailing(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Crop or zero-pad t's trailing dimensions to `shape` (rows unchanged)."""
    if tuple(t.shape[1:]) == tuple(shape):
        return t
    t = t[(slice(None), *(slice(0, n) for n in shape))]
    pad: list[int] = []
    for have, want in zip(reversed(t.shape[1:]), reversed(shape), strict=True):
        pad += [0, want - have]
    return F.pad(t, pad)
