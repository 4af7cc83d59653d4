"""Lookahead weight averaging: the net is pulled back to a running average of itself.

Every `every` backbone optimiser updates (once `start_frac` of the run has passed) the average moves
towards the current weights, avg ← ρ·avg + (1 − ρ)·w, and the weights are set to it. ρ grows
as (update/total)^3 from 0 to `decay`^every, so early training moves fast and the last epochs
average strongly. BatchNorm running statistics are averaged with the weights they belong to.
At the end of an epoch the weights equal the average, so a resumed run needs no extra state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LookaheadConfig:
    every: int = 5
    start_frac: float = 0.3
    decay: float = 0.95  # per-update base of ρ


class Lookahead:
    def __init__(self, module: nn.Module, cfg: LookaheadConfig) -> None:
        self.module, self.cfg = module, cfg
        self.average: list[torch.Tensor] | None = None

    def _tensors(self) -> list[torch.Tensor]:
        return [t for t in self.module.state_dict().values() if t.is_floating_point()]

    def rho(self, update: int, total: int) -> float:
        return self.cfg.decay**self.cfg.every * (update / max(total, 1)) ** 3

    @torch.no_grad()
    def after_update(self, update: int, total: int) -> None:
        """Call after backbone optimiser update number `update` (1-based) of `total`."""
        if update < self.cfg.start_frac * total or update % self.cfg.every:
            return
        if self.average is None:
            self.average = [t.detach().clone() for t in self._tensors()]
            return
        self._pull(self.rho(update, total))

    @torch.no_grad()
    def end_epoch(self) -> None:
        if self.average is not None:
            self._pull(1.0)

    def _pull(self, rho: float) -> None:
        for avg, cur in zip(self.average, self._tensors(), strict=True):
            avg.lerp_(cur, 1.0 - rho)
            cur.copy_(avg)
