"""The network cut into the static parts that ONNX Runtime runs and Python loops over.

Each part is a plain nn.Module with positional tensor inputs and named inputs/outputs, so the
exporter (model/onnx_export.py) and the engine (service/engines/onnx_engine.py) agree on one
naming. The parts compose exactly like `DynaLayNet.straight` / `recompute`:

    stem(x) ─▶ inj = (u,) | (u, mask)         h = u
    layer_i(h, *inj) ─▶ h                        (i = 1..3, also each fixed-point iteration)
    inject_i(h) ─▶ u_i                           staged only (i = 2, 3): stage i's injection
                                                 from the state below (model/staged.py)
    head(h, *inj) ─▶ logits (B, C)
    profile(z1, z2, z3, logits, *inj) ─▶ (B, P)  the agent's input
    agent(profile) ─▶ agent_logits (B, 4)

Pure torch: nothing here imports onnx.
"""

from dataclasses import dataclass

from torch import Tensor, nn

from model.actions import LAYER_NAMES
from model.config import ModelConfig
from model.network import DynaLayNet, profile_features

# Names shared by the exported graphs and the engine that binds them.
STATE = "h"
LAYER_OUT = "h_out"
LOGITS = "logits"
PROFILE = "profile"
AGENT_LOGITS = "agent_logits"
STATE_NAMES = ("z1", "z2", "z3")  # the straight pass' states, the profile's inputs


def model_inputs(arch: str) -> tuple[str, ...]:
    """The stem's inputs: images (B, 3, H, W) float, or token ids (B, T) + lengths (B,) long."""
    return ("x",) if arch == "cnn" else ("ids", "lengths")


def injection_names(arch: str) -> tuple[str, ...]:
    """The stem's outputs, passed to every later part: u, plus the LSTM's mask (B, T, 1)."""
    return ("u",) if arch == "cnn" else ("u", "mask")


@dataclass(frozen=True)
class Part:
    name: str  # file stem under the checkpoint's onnx/ folder
    module: nn.Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class StemPart(nn.Module):
    """x → inj. The CNN ignores lengths; the LSTM builds its mask from them."""

    def __init__(self, net: DynaLayNet) -> None:
        super().__init__()
        self.backbone = net.backbone
        self.text = net.config.arch == "lstm"

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...] | Tensor:
        inj = self.backbone.stem(x, lengths)
        return inj if self.text else inj[0]  # single-output graphs return a bare tensor


class InjectPart(nn.Module):
    """Staged layout: the state below (B, w_{i-1}, s, s) → stage i's injection u_i."""

    def __init__(self, net: DynaLayNet, index: int) -> None:
        super().__init__()
        self.transition = net.backbone.transitions[index - 1]

    def forward(self, h: Tensor) -> Tensor:
        return self.transition(h)


class HeadPart(nn.Module):
    """(h, *inj) → logits (B, C)."""

    def __init__(self, net: DynaLayNet) -> None:
        super().__init__()
        self.backbone = net.backbone

    def forward(self, h: Tensor, *inj: Tensor) -> Tensor:
        return self.backbone.head(h, *inj)


class ProfilePart(nn.Module):
    """(z1, z2, z3, logits, *inj) → profile (B, 3·D + 2), as in `DynaLayNet.straight`."""

    def __init__(self, net: DynaLayNet) -> None:
        super().__init__()
        self.backbone = net.backbone

    def forward(self, z1: Tensor, z2: Tensor, z3: Tensor, logits: Tensor, *inj: Tensor) -> Tensor:
        return profile_features(self.backbone, (z1, z2, z3), logits, inj)


def export_parts(net: DynaLayNet) -> list[Part]:
    """Every part of `net`, in the order the engine runs them (`PART_NAMES`).

    >>> from model.config import ModelConfig
    >>> from model.network import build_model
    >>> net = build_model(ModelConfig(width=8))
    >>> [part.name for part in export_parts(net)] == list(part_names(net.config))
    True
    """
    arch = net.config.arch
    inj = injection_names(arch)
    layers = [
        Part(name, layer, (STATE, *inj), (LAYER_OUT,))
        for name, layer in zip(LAYER_NAMES, net.backbone.layers, strict=True)
    ]
    injects = [
        Part(f"inject{i + 1}", InjectPart(net, i), (STATE,), (inj[0],))
        for i in range(1, len(LAYER_NAMES))
        if net.config.stem == "staged"
    ]
    parts = [
        Part("stem", StemPart(net), model_inputs(arch), inj),
        *injects,
        *layers,
        Part("head", HeadPart(net), (STATE, *inj), (LOGITS,)),
        Part("profile", ProfilePart(net), (*STATE_NAMES, LOGITS, *inj), (PROFILE,)),
        Part("agent", net.agent, (PROFILE,), (AGENT_LOGITS,)),
    ]
    # Inference mode for every part, wrappers included: a fresh wrapper module starts in
    # training mode, and the exporter restores that mode afterwards — recursively, so the
    # shared backbone would come back with its dropout (the LSTM's embedding dropout) and
    # BatchNorm batch statistics switched on.
    for part in parts:
        part.module.eval()
    return parts


PART_NAMES: tuple[str, ...] = ("stem", *LAYER_NAMES, "head", "profile", "agent")
STAGED_INJECTS: tuple[str, ...] = ("inject2", "inject3")


def part_names(config: ModelConfig) -> tuple[str, ...]:
    """The parts a network of this config exports, in the order the engine runs them.

    >>> part_names(ModelConfig(stem="staged"))[:3]
    ('stem', 'inject2', 'inject3')
    """
    return ("stem", *STAGED_INJECTS, *PART_NAMES[1:]) if config.stem == "staged" else PART_NAMES
