"""The two protocols a DynaLay network is composed from: its parts, and how its loops iterate.

`NetworkParts` is what a runtime supplies (PyTorch modules in model/network.py, ONNX sessions
in the service); `LoopKind` (model/loops.py) composes those parts into the straight pass, one
iteration of an action's loop and its finish. Each names the other, so they live together here,
below both the network and the loop kinds, and neither module imports the other for them.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class NetworkParts(Protocol):
    """The pieces of a DynaLay network, batch-first; `inj` is the stem's output tuple."""

    loops: LoopKind  # how an action iterates (model/loops.py)

    def stem(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, ...]: ...

    def injection(
        self, index: int, below: Tensor, inj: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]: ...

    def layer(self, index: int, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor: ...

    def head(self, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor: ...

    def profile(
        self, states: tuple[Tensor, ...], logits: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor: ...

    def agent(self, profile: Tensor) -> Tensor: ...


class LoopKind(Protocol):
    """How an action's loop runs over the parts (model/loops.py has the two kinds)."""

    def straight(self, parts: NetworkParts, inj: tuple[Tensor, ...]) -> tuple[Tensor, ...]: ...

    def start(self, action: int, states: tuple[Tensor, ...]) -> Tensor: ...

    def iterate(
        self, parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor: ...

    def finish(
        self, parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor: ...
