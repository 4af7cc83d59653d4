"""The PyTorch engine: a loaded checkpoint's own modules, handed to the shared stepper.

`spec()` gives the stepper (service/engines/stepping.py) the network's modules as its parts,
so batch scheduling (`run_batch`) and iteration scheduling both run the one loop every engine
runs; its answers equal the model's own `DynaLayNet.forward` (up to float rounding of batched
kernels). The stepper times the sections (straight pass, agent, loop, head) and, on CUDA, waits
for the device at each lap of a straight pass so the laps are billed where they ran.

In a reduced precision (service/engines/precision.py) the modules run as `CastParts`: bf16 or
fp16 inside each part, fp32 in between, so the loop states, the fixed-point residuals and stop
tests stay fp32 — exactly what the parity gate (service/engines/parity.py) checked at load,
whichever scheduler serves.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from model.calibration import load_calibration
from model.checkpoint import LoadedCheckpoint, load_checkpoint
from model.network import ModuleParts
from model.parts import NetworkParts
from service.engines.base import EngineInput, EngineSpec, ModelMeta
from service.engines.inputs import blank_input, collate, warmup_batch
from service.engines.parity import select_mode
from service.engines.precision import (
    REFERENCE,
    SERVE_REFERENCE,
    CastParts,
    Mode,
    PrecisionPolicy,
    memory_format,
)
from service.engines.stepping import run_batch

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

    def spec(self) -> EngineSpec:
        config, device = self.net.config, self._torch_device
        return EngineSpec(
            self._parts(),
            partial(collate, modality=self.meta.modality, device=device, layout=self.layout),
            config.solver,
            config.tol,
            config.max_iter,
            device,
            self._macs,
        )

    def warmup(self) -> None:
        run_batch(self.spec(), warmup_batch(self.meta))

    def _parts(self) -> NetworkParts:
        parts = ModuleParts(self.net)
        if self.precision == "fp32":
            return parts
        return CastParts(parts, self.precision, self._torch_device)


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
    return [EngineInput(blank_input(engine.meta))] * LAYOUT_PROBE
