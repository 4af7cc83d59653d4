"""A CNN whose loops carry its depth: a thin prelude, then three loopable stages of their own shape.

    x ─prelude─▶ u (w1, 15, 15) ─stage 1─▶ z1 ─T2─▶ u2 (w2, 7, 7) ─stage 2─▶ z2 ─T3─▶ u3 (w3, 3, 3)
      ─stage 3─▶ z3 ─head─▶ logits

The prelude (the frozen 2×2 patch-whitening conv, one conv and a pool) runs once per image and
does little of the work. Stage i is a residual block L_i(h; u_i) at (w_i, s_i, s_i) whose
injection u_i is the transition T_i (conv → pool → GroupNorm → GELU) of the stage below's
state, so every stage can be iterated on its own shape.

One *sweep* over stages 1..k updates each stage from its own previous state and the fresh state
of the stage below (Gauss-Seidel order): z_i ← L_i(z_i; T_i(z_{i-1})), with z_0 = u. The
straight pass evaluates each stage once from its own injection, z_i = L_i(u_i; u_i); looping
stages 1..k means more sweeps over them, then the stages above once (model/loops.py). Stages
and transitions normalise per sample (GroupNorm), so a loop's result never depends on its batch
mates; the prelude may use BatchNorm because it never runs inside a loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import ModelConfig
from model.layers import ConvLoopLayer
from model.whitening import WHITEN_KERNEL, whitening_filters

HEAD_SCALE = 0.125  # pooled features have norm ~√(2·w3); keeps the head's steps small


class Transition(nn.Module):
    """(B, c_in, s, s) → (B, c_out, s/2, s/2): conv 3×3 → max-pool 2 → GroupNorm → GELU."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(groups, c_out)

    def forward(self, z: Tensor) -> Tensor:
        return F.gelu(self.norm(F.max_pool2d(self.conv(z), 2)))


class StagedCNNBackbone(nn.Module):
    """Images (B, 3, S, S) → prelude → three loopable stages at S/2, S/4, S/8 (floor) → head.

    widths (w1, w2, w3): the stages' channels; the prelude ends at w1.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        in_channels, widths, norm_groups = cfg.in_channels, cfg.stage_widths, cfg.norm_groups
        w1, w2, w3 = widths
        n_whiten = 2 * in_channels * WHITEN_KERNEL**2
        self.whiten = nn.Conv2d(in_channels, n_whiten, WHITEN_KERNEL, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from data by init_whitening
        self.prelude = nn.Sequential(
            nn.GELU(),
            nn.Conv2d(n_whiten, w1, 3, padding=1, bias=False),
            nn.MaxPool2d(2),  # 31 → 15 for 32-px images
            nn.BatchNorm2d(w1),
            nn.GELU(),
        )
        groups = [min(norm_groups, w) for w in widths]
        self.layers = nn.ModuleList(
            ConvLoopLayer(w, g) for w, g in zip(widths, groups, strict=True)
        )
        self.transitions = nn.ModuleList(
            [Transition(w1, w2, groups[1]), Transition(w2, w3, groups[2])]
        )
        self.fc = nn.Linear(2 * w3, cfg.n_classes)
        self.summary_dims = tuple(widths)  # `pool` of each stage's state

    @torch.no_grad()
    def init_whitening(self, images: Tensor) -> None:
        """images: (N, 3, H, W) normalised training images (a few thousand suffice)."""
        self.whiten.weight.copy_(whitening_filters(images, WHITEN_KERNEL).to(self.whiten.weight))

    def stem(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...]:
        return (self.prelude(self.whiten(x)),)  # (B, w1, 15, 15)

    def injection(self, index: int, below: Tensor, inj: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Stage `index`'s injection from the state below it: the stem's own for stage 0,
        else the transition of the stage below, (B, w_i, s_i, s_i)."""
        return inj if index == 0 else (self.transitions[index - 1](below),)

    def pool(self, z: Tensor, u: Tensor) -> Tensor:
        return z.mean(dim=(2, 3))  # (B, w_i)

    def head(self, z: Tensor, u: Tensor) -> Tensor:
        pooled = torch.cat([z.mean(dim=(2, 3)), z.amax(dim=(2, 3))], dim=1)  # (B, 2·w3)
        return self.fc(pooled) * HEAD_SCALE
