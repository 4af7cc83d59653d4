"""The PyTorch engine: a loaded checkpoint run stage by stage under `torch.inference_mode()`.

Stages are timed separately (straight pass, agent, looped recomputation, head = softmax and the
copy to the host) so the metrics can show where a batch's time goes. On CUDA each lap waits for
the device, otherwise the asynchronous launches would all be billed to the last stage.
`run` is the model's own `DynaLayNet` forward (batch scheduling); `steps` hands the same modules
to the shared stepper (service/engines/stepping.py) for iteration-level scheduling.

In a reduced precision (service/engines/precision.py) the modules run as `CastParts`, and `run`
goes through the stepper too, so both schedulings compute exactly what the parity gate
(service/engines/parity.py) checked at load: bf16 inside the parts, fp32 in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.calibration import load_calibration
from model.checkpoint import LoadedCheckpoint, load_checkpoint
from model.network import ModuleParts
from model.parts import NetworkParts
from service.engines.base import BatchOutput, EngineInput, ModelMeta
from service.engines.parity import select_mode
from service.engines.precision import (
    REFERENCE,
    SERVE_REFERENCE,
    CastParts,
    Mode,
    PrecisionPolicy,
    in_layout,
    memory_format,
)
from service.engines.stages import WARMUP_TOKENS, StageClock, to_samples
from service.engines.stepping import EngineSteps, Stepper

LAYOUT_PROBE = 8  # inputs the layouts are timed on at load: tiny, once


class TorchEngine:
    name = "torch"

    def __init__(self, loaded: LoadedCheckpoint, device: str, mode: Mode = REFERENCE) -> None:
        """Lays the shared network's weights out in `mode.layout` (the last engine built on a
        checkpoint decides)."""
        self.net = loaded.net
        self.device = device
        self.meta = ModelMeta.from_checkpoint(loaded)
        self.precision = mode.precision
        self.layout = mode.layout if self.meta.modality == "image" else "nchw"  # text: no choice
        self._torch_device = torch.device(device)
        self._macs = loaded.net.action_macs
        self.net.to(memory_format=memory_format(mode.layout))  # 4-D weights only

    def run(self, batch: Sequence[EngineInput]) -> BatchOutput:
        if self.precision != "fp32":
            return Stepper(self.steps(), capacity=len(batch)).run(batch)
        with torch.inference_mode():
            return self._run(batch)

    def steps(self) -> EngineSteps:
        config = self.net.config
        return EngineSteps(
            self._parts(),
            self._collate,
            config.solver,
            config.tol,
            config.max_iter,
            self._torch_device,
            self._macs,
        )

    def warmup(self) -> None:
        # One sample per forced action plus one the agent decides: every code path runs once.
        dummy = self._dummy_input()
        self.run([EngineInput(dummy, action) for action in (*range(len(self.meta.actions)), None)])

    def _parts(self) -> NetworkParts:
        parts = ModuleParts(self.net)
        if self.precision == "fp32":
            return parts
        return CastParts(parts, self.precision, self._torch_device)

    def _run(self, batch: Sequence[EngineInput]) -> BatchOutput:
        x, lengths = self._collate(batch)
        clock = StageClock(self._torch_device)
        straight = self.net.straight(x, lengths)
        clock.lap("straight")
        actions, agent_logits = self.net.decide(straight)
        actions = self._apply_forced(actions, batch)
        clock.lap("agent")
        out = self.net.recompute(straight, actions, agent_logits)
        clock.lap("loop")
        samples = to_samples(out)
        clock.lap("head")
        return BatchOutput(samples, clock.seconds)

    def _collate(self, batch: Sequence[EngineInput]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.meta.modality == "text":
            return self._collate_text(batch)
        x = torch.from_numpy(np.stack([item.data for item in batch]))  # (B, 3, H, W)
        return in_layout(x.to(self._torch_device, non_blocking=True), self.layout), None

    def _collate_text(self, batch: Sequence[EngineInput]) -> tuple[torch.Tensor, torch.Tensor]:
        # Pad to the batch's longest sequence; 0 is the padding id (model contract).
        lengths = [len(item.data) for item in batch]
        ids = np.zeros((len(batch), max(lengths)), dtype=np.int64)  # (B, T)
        for row, item in enumerate(batch):
            ids[row, : len(item.data)] = item.data
        return (
            torch.from_numpy(ids).to(self._torch_device),
            torch.tensor(lengths, dtype=torch.long, device=self._torch_device),
        )

    def _apply_forced(self, actions: torch.Tensor, batch: Sequence[EngineInput]) -> torch.Tensor:
        forced = [(i, item.action) for i, item in enumerate(batch) if item.action is not None]
        if not forced:
            return actions
        actions = actions.clone()
        rows, values = zip(*forced, strict=True)
        actions[list(rows)] = torch.tensor(values, dtype=actions.dtype, device=actions.device)
        return actions

    def _dummy_input(self) -> np.ndarray:
        if self.meta.modality == "text":
            return np.ones(WARMUP_TOKENS, dtype=np.int64)
        height, width = self.meta.preprocessing.get("image_size", (32, 32))
        return np.zeros((3, int(height), int(width)), dtype=np.float32)


def load(directory: Path, device: str, policy: PrecisionPolicy = SERVE_REFERENCE) -> TorchEngine:
    """The registry factory: (checkpoint directory, device) -> engine, in the mode `policy`
    and the parity gate choose (service/engines/parity.py)."""
    loaded = load_checkpoint(directory, device=device)

    def build(mode: Mode) -> TorchEngine:
        return TorchEngine(loaded, device, mode)

    if (policy.precision, policy.layout) == ("fp32", "nchw"):  # nothing to check or measure
        return build(REFERENCE)
    calibration = _calibration_inputs(loaded)
    probe = _layout_probe(build(REFERENCE), calibration)
    mode, _ = select_mode(build, policy, torch.device(device), calibration, probe)
    return build(mode)


def _calibration_inputs(loaded: LoadedCheckpoint) -> list[EngineInput] | None:
    calibration = load_calibration(loaded.directory)
    if calibration is None or loaded.config.arch != "cnn":
        return None
    images = calibration.normalised(loaded.preprocessing).numpy()  # (N, 3, H, W)
    return [EngineInput(image) for image in images]


def _layout_probe(
    engine: TorchEngine, calibration: list[EngineInput] | None
) -> list[EngineInput] | None:
    """A few inputs to time the layouts on: calibration images, else blank ones; None for text."""
    if engine.meta.modality != "image":
        return None
    if calibration:
        return calibration[:LAYOUT_PROBE]
    return [EngineInput(engine._dummy_input())] * LAYOUT_PROBE
