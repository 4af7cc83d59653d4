"""Section timing: where a batch's time goes (straight pass, agent, loop, head)."""

from __future__ import annotations

import time

import torch


class SectionClock:
    """Seconds per section of one batch; on CUDA each lap waits for the device first, unless
    `wait=False` (a loop step, which must not wait more than once: its laps are host time)."""

    def __init__(self, device: torch.device, wait: bool = True) -> None:
        self._sync = wait and device.type == "cuda"
        self._device = device
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, section: str) -> None:
        if self._sync:
            torch.cuda.synchronize(self._device)
        now = time.perf_counter()
        self.seconds[section] = now - self._last
        self._last = now
