"""What every engine gives the service: a model's metadata and `run(batch) -> per-sample results`.

Engines see plain numpy inputs and return plain Python results, so the batcher, the HTTP layer and
the metrics never touch torch (or onnxruntime) objects. An engine that also offers `steps()` (the
parts of its network, service/engines/stepping.py) can be scheduled iteration by iteration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from model.actions import ACTIONS, THESIS_ACTIONS, n_actions
from model.checkpoint import LoadedCheckpoint

if TYPE_CHECKING:
    from service.engines.stepping import EngineSteps


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
    stage_seconds: dict[str, float] = field(default_factory=dict)  # straight/agent/loop/head


class Engine(Protocol):
    name: str  # registry name, e.g. "torch"
    device: str  # e.g. "cpu", "cuda:0"
    precision: str  # what it computes in: "fp32", "bf16", "fp16" (service/engines/precision.py)
    layout: str  # image memory layout: "nchw" or "nhwc" (channels_last)
    meta: ModelMeta

    def run(self, batch: Sequence[EngineInput]) -> BatchOutput:
        """Blocking; called from one worker thread per model, never on the event loop."""
        ...

    def warmup(self) -> None:
        """Exercise every action once, so the first request pays no one-off costs."""
        ...


class SteppedEngine(Engine, Protocol):
    def steps(self) -> EngineSteps:
        """The parts, collation and loop settings the shared `Stepper` runs this model from."""
        ...


def offers_steps(engine: Engine) -> bool:
    """Whether `engine` can be scheduled iteration by iteration (it has `steps()`)."""
    return callable(getattr(engine, "steps", None))


EngineFactory = Callable[[Path, str], Engine]  # (checkpoint directory, device) -> engine
