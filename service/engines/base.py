"""What every engine gives the service: a model's metadata, `spec()` and `warmup()`.

An engine is the parts of one checkpoint's network on a device (`EngineSpec`: PyTorch modules
or ONNX Runtime sessions, how a batch is collated, the loop settings). It runs nothing itself:
the shared stepper (service/engines/stepping.py) runs every engine, a whole batch to the end
(`run_batch`, batch scheduling) or one loop step at a time (iteration scheduling). Requests come
in as plain numpy inputs and results go out as plain Python values, so the schedulers, the HTTP
layer and the metrics never touch torch (or onnxruntime) objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from model.actions import ACTIONS, THESIS_ACTIONS, n_actions
from model.checkpoint import LoadedCheckpoint
from model.macs import ActionMacs
from model.parts import NetworkParts


@dataclass(frozen=True)
class ModelMeta:
    """A loaded checkpoint's identity and input contract."""

    name: str
    version: str
    arch: str  # "cnn" | "lstm"
    classes: tuple[str, ...]
    preprocessing: dict  # model/checkpoint.py's preprocessing dict
    directory: Path
    actions: tuple[str, ...] = THESIS_ACTIONS  # the actions this model offers (ids = positions)

    @classmethod
    def from_checkpoint(cls, loaded: LoadedCheckpoint) -> ModelMeta:
        return cls(
            name=loaded.name,
            version=loaded.version,
            arch=loaded.config.arch,
            classes=loaded.classes,
            preprocessing=loaded.preprocessing,
            directory=loaded.directory,
            actions=ACTIONS[: n_actions(loaded.config.tta_action)],
        )

    @property
    def modality(self) -> str:
        return str(self.preprocessing.get("kind", "image"))  # "image" | "text"


@dataclass(frozen=True)
class EngineInput:
    data: np.ndarray  # image: (3, H, W) float32 normalised; text: (T,) int64 token ids
    action: int | None = None  # a forced action id (into ModelMeta.actions); None: the agent's


@dataclass(frozen=True)
class SampleResult:
    class_index: int  # argmax of the logits
    probabilities: tuple[float, ...]  # softmax over the classes
    action: int
    iterations: int
    converged: bool
    layer_evaluations: int
    macs: int  # multiply-adds executed for this sample (model/macs.py)


@dataclass(frozen=True)
class BatchOutput:
    samples: list[SampleResult]  # one per input, same order
    section_seconds: dict[str, float] = field(default_factory=dict)  # straight/agent/loop/head


Collate = Callable[[Sequence[EngineInput]], tuple[Tensor, Tensor | None]]


@dataclass(frozen=True)
class EngineSpec:
    """What an engine hands the stepper: plain data, no behaviour of its own."""

    parts: NetworkParts
    collate: Collate  # inputs → (x, lengths) on `device` (service/engines/inputs.py)
    solver: str  # the checkpoint's forward solver (model.solvers.SOLVERS key)
    tol: float
    max_iter: int
    device: torch.device
    macs: ActionMacs  # what each piece costs one sample (the checkpoint's network, counted)


class Engine(Protocol):
    name: str  # registry name, e.g. "torch"
    device: str  # e.g. "cpu", "cuda:0"
    precision: str  # what it computes in: "fp32", "bf16", "fp16" (service/engines/precision.py)
    layout: str  # image memory layout: "nchw" or "nhwc" (channels_last)
    meta: ModelMeta

    def spec(self) -> EngineSpec:
        """The parts, collation and loop settings the shared `Stepper` runs this model from."""
        ...

    def warmup(self) -> None:
        """Exercise every action once, so the first request pays no one-off costs."""
        ...


EngineFactory = Callable[[Path, str], Engine]  # (checkpoint directory, device) -> engine
