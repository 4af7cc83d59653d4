"""How a looped action iterates, behind one registry: the chained loop and the staged sweep.

A loop kind (`model.parts.LoopKind`) is four functions over a network's parts
(`model.parts.NetworkParts`):

- `straight(parts, inj) -> states`: every layer once, the straight pass' (z1, z2, z3);
- `start(action, states) -> z`: action k's loop state from the straight pass, (B, ...);
- `iterate(parts, action, z, inj) -> z`: one iteration of action k (what the solver repeats);
- `finish(parts, action, z, inj) -> h`: the layers above k once on the loop's result; the
  head reads h.

"chained" (every layer keeps one shape and reads the stem's injection u): action k iterates
the composite L_k∘…∘L1 on one state, started from z_k; the finish runs L_{k+1}..L3 once.

"staged" (model/staged.py: each stage has its own shape; its injection is the transition of
the stage below): action k sweeps stages 1..k, each from its own previous state and the fresh
state below (Gauss-Seidel order), so more iterations add depth where features are built. Its
state is z1..zk flattened and concatenated, (B, D1 + … + Dk), so that solvers, trackers and
the serving stepper treat it like any other state; the finish runs stages k+1..3 as the
straight pass does, each from its own injection.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.actions import N_LAYERS
from model.config import ModelConfig
from model.parts import LoopKind, NetworkParts


class ChainedLoop:
    """Layers of one shape, each reading the stem's injection."""

    def straight(self, parts: NetworkParts, inj: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        h, states = inj[0], []
        for index in range(N_LAYERS):
            h = parts.layer(index, h, inj)
            states.append(h)
        return tuple(states)

    def start(self, action: int, states: tuple[Tensor, ...]) -> Tensor:
        return states[action - 1]

    def iterate(
        self, parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor:
        for index in range(action):
            z = parts.layer(index, z, inj)
        return z

    def finish(
        self, parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor:
        for index in range(action, N_LAYERS):
            z = parts.layer(index, z, inj)
        return z


class StagedLoop:
    """Stages of their own shapes (channels `widths`, each half the side of the one below)."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        self.widths = tuple(widths)

    def shapes(self, u: Tensor) -> list[tuple[int, int, int]]:
        """(C, H, W) of each stage's state for the stem output u (B, w1, s, s)."""
        side, out = u.shape[-1], []
        for index, width in enumerate(self.widths):
            side = side if index == 0 else side // 2  # a transition's max-pool floors
            out.append((width, side, side))
        return out

    def _enter(self, parts: NetworkParts, index: int, below: Tensor, inj) -> Tensor:
        """Stage `index` evaluated once from its own injection (as in the straight pass)."""
        stage_inj = parts.injection(index, below, inj)
        return parts.layer(index, stage_inj[0], stage_inj)

    def straight(self, parts: NetworkParts, inj: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        below, states = inj[0], []
        for index in range(N_LAYERS):
            below = self._enter(parts, index, below, inj)
            states.append(below)
        return tuple(states)

    def start(self, action: int, states: tuple[Tensor, ...]) -> Tensor:
        return pack(states[:action])

    def iterate(
        self, parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor:
        states = unpack(z, self.shapes(inj[0])[:action])
        below = inj[0]
        for index in range(action):
            states[index] = parts.layer(index, states[index], parts.injection(index, below, inj))
            below = states[index]
        return pack(states)

    def finish(
        self, parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor:
        below = unpack(z, self.shapes(inj[0])[:action])[-1]
        for index in range(action, N_LAYERS):
            below = self._enter(parts, index, below, inj)
        return below


def pack(states: tuple[Tensor, ...] | list[Tensor]) -> Tensor:
    """(B, C_i, H_i, W_i) for each i → (B, Σ C_i·H_i·W_i)."""
    return (
        states[0].flatten(1)
        if len(states) == 1
        else torch.cat([s.flatten(1) for s in states], dim=1)
    )


def unpack(z: Tensor, shapes: list[tuple[int, int, int]]) -> list[Tensor]:
    """The inverse of `pack`: (B, D) → [(B, C_i, H_i, W_i)]."""
    out, offset = [], 0
    for c, h, w in shapes:
        size = c * h * w
        out.append(z[:, offset : offset + size].reshape(z.shape[0], c, h, w))
        offset += size
    if offset != z.shape[1]:
        raise ValueError(f"a loop state of {z.shape[1]} values does not hold stages {shapes}")
    return out


def loop_kind(config: ModelConfig) -> LoopKind:
    """The loop kind a config's network uses.

    >>> [type(loop_kind(ModelConfig(stem=stem))).__name__ for stem in ("whiten", "staged")]
    ['ChainedLoop', 'StagedLoop']
    """
    return StagedLoop(config.stage_widths) if config.stem == "staged" else ChainedLoop()
