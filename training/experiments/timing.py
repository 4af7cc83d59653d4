"""Training wall time split into forward and backward, without touching the trainer.

training.trainer.epoch.run_epoch does, per batch: step_fn(ctx, x, y) → loss.backward() → gradient
average/clip → optimizer.step(). So the forward is the step function's duration (wrapped here)
and the backward runs from its return to the first optimizer step (an optimizer step pre-hook),
which also holds the gradient average (a no-op in one process) and clipping. The rest of the
epoch time (augmentation, optimizer steps, logging) is reported as `other`. On CUDA every mark
synchronises, so queued kernels are charged to the section (forward, backward) that launched
them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from training.trainer.steps import STEPS, StepContext, StepFn, StepResult


@dataclass
class TrainTiming:
    forward_seconds: float = 0.0
    backward_seconds: float = 0.0
    train_seconds: float = 0.0  # the epochs' batch iterations (evaluation excluded)
    steps: int = 0
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        other = self.train_seconds - self.forward_seconds - self.backward_seconds
        per_image = 1000.0 / max(self.images, 1)
        return {
            "forward_seconds": self.forward_seconds,
            "backward_seconds": self.backward_seconds,
            "other_seconds": max(other, 0.0),
            "train_seconds": self.train_seconds,
            "steps": self.steps,
            "images": self.images,
            "forward_ms_per_image": self.forward_seconds * per_image,
            "backward_ms_per_image": self.backward_seconds * per_image,
        }


class StepTimer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.timing = TrainTiming()
        self._forward_end: float | None = None

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def wrap(self, step_fn: StepFn) -> StepFn:
        def timed(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
            start = self.now()
            result = step_fn(ctx, x, y)
            self._forward_end = self.now()
            self.timing.forward_seconds += self._forward_end - start
            self.timing.steps += 1
            self.timing.images += int(y.shape[0])
            return result

        return timed

    def before_optimizer_step(self, *_: Any) -> None:
        """Optimizer step pre-hook: the first one after a forward closes its backward."""
        if self._forward_end is not None:
            self.timing.backward_seconds += self.now() - self._forward_end
            self._forward_end = None


@contextmanager
def timed_training(
    timer: StepTimer,
    optimizers: dict[str, torch.optim.Optimizer],
    overrides: dict[str, StepFn] | None = None,
) -> Iterator[dict[str, StepFn]]:
    """Yields the phase step table (the trainer's STEPS, with `overrides` in place) routed
    through `timer`, to pass to train_epoch(..., steps=...); the optimizer hooks that close
    each backward are removed afterwards."""
    handles = [
        opt.register_step_pre_hook(timer.before_optimizer_step) for opt in optimizers.values()
    ]
    try:
        yield {phase: timer.wrap(fn) for phase, fn in {**STEPS, **(overrides or {})}.items()}
    finally:
        for h in handles:
            h.remove()
