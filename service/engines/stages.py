"""What both engines share: stage timing, per-sample results, the warm-up input size."""

from __future__ import annotations

import time

import torch

from model.network import ForwardOutput
from service.engines.base import SampleResult

WARMUP_TOKENS = 8  # length of the dummy text used to warm a text model up


def to_samples(out: ForwardOutput) -> list[SampleResult]:
    probabilities = out.logits.float().softmax(dim=1).cpu().tolist()  # (B, C)
    class_index = out.logits.argmax(dim=1).cpu().tolist()
    columns = (out.actions, out.iterations, out.converged, out.layer_evaluations, out.macs)
    actions, iterations, converged, evaluations, macs = (t.cpu().tolist() for t in columns)
    return [
        SampleResult(
            class_index=class_index[i],
            probabilities=tuple(probabilities[i]),
            action=actions[i],
            iterations=iterations[i],
            converged=bool(converged[i]),
            layer_evaluations=evaluations[i],
            macs=macs[i],
        )
        for i in range(len(actions))
    ]


class StageClock:
    """Seconds per stage of one batch; on CUDA each lap waits for the device first, unless
    `wait=False` (a loop step, which must not wait more than once: its laps are host time)."""

    def __init__(self, device: torch.device, wait: bool = True) -> None:
        self._sync = wait and device.type == "cuda"
        self._device = device
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        if self._sync:
            torch.cuda.synchronize(self._device)
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now
