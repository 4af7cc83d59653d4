"""Numeric precision and memory layout of an engine: what this machine runs, and how.

Precisions:
- "fp32": the reference every other precision is checked against (service/engines/parity.py).
- "bf16": `torch.autocast(dtype=torch.bfloat16)`: on a CPU only where the cores have bf16 dot
  products (the `avx512_bf16` or `amx_bf16` flag, and oneDNN in this torch build; on other
  CPUs autocast would emulate bf16, slower than fp32), on CUDA where the GPU supports it.
- "fp16": autocast to float16, CUDA only.
- "int8": static quantization of the convolutions, run by the ONNX engine on a CPU
  (service/engines/int8.py); the PyTorch engine refuses it.

Reduced precision lives *inside* a network part only (`CastParts`): each part runs under
autocast and hands its outputs back as fp32, so the loop states, the fixed-point residuals and
stop tests, the averaging of the tta views and the softmax all stay in fp32.

Layouts (image models): "nchw", PyTorch's default, and "nhwc" (`torch.channels_last`), the
layout oneDNN and cuDNN convolutions prefer; which one is faster is measured at load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from model.parts import NetworkParts

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
REDUCED = {"bf16": torch.bfloat16, "fp16": torch.float16}
LAYOUTS = ("nchw", "nhwc")
AUTO = "auto"
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # any one: native bf16 dot products
CPUINFO = Path("/proc/cpuinfo")


class PrecisionError(RuntimeError):
    """A precision or layout that was asked for cannot serve this model on this machine."""


@dataclass(frozen=True)
class PrecisionPolicy:
    """What the operator asked for (DYNALAY_PRECISION, DYNALAY_LAYOUT) and the parity gate."""

    precision: str = "fp32"  # "auto" or one of PRECISIONS
    layout: str = "nchw"  # "auto" or one of LAYOUTS
    min_label_agreement: float = 0.995  # share of calibration labels equal to fp32's
    min_action_agreement: float = 0.99  # share of the agent's actions equal to fp32's

    def __post_init__(self) -> None:
        if self.precision not in (AUTO, *PRECISIONS):
            raise ValueError(f"precision {self.precision!r}: choose auto or one of {PRECISIONS}")
        if self.layout not in (AUTO, *LAYOUTS):
            raise ValueError(f"layout {self.layout!r}: choose auto or one of {LAYOUTS}")


@dataclass(frozen=True)
class Mode:
    """How one engine computes: a precision and a layout."""

    precision: str = "fp32"
    layout: str = "nchw"

    def __str__(self) -> str:
        return f"{self.precision}/{self.layout}"


REFERENCE = Mode()  # fp32, NCHW: what every other mode is checked against
SERVE_REFERENCE = PrecisionPolicy()  # serve the reference: nothing is checked or timed at load


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where it cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, arm64
            return frozenset(value.split())
    return frozenset()


def unsupported(precision: str, device: torch.device, flags: frozenset[str] | None = None) -> str:
    """Why `precision` cannot run on `device` here; "" when it can."""
    if precision == "fp32":
        return ""
    if precision == "int8":
        return (
            "int8 runs on the onnx engine (ONNX Runtime's static quantization): "
            "set DYNALAY_ENGINE=onnx"
        )
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return f"{torch.cuda.get_device_name(device)} does not support bf16"
        return ""
    if device.type != "cpu":
        return f"reduced precision runs on cpu or cuda, not {device.type}"
    if precision != "bf16":
        return f"{precision} runs on CUDA only; on a CPU choose bf16 or fp32"
    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN (mkldnn), which bf16 kernels on a CPU need"
    have = cpu_flags() if flags is None else flags
    if not have & BF16_CPU_FLAGS:
        return f"this CPU lacks {' and '.join(sorted(BF16_CPU_FLAGS))}: bf16 would be emulated"
    return ""


def runnable(device: torch.device, flags: frozenset[str] | None = None) -> list[str]:
    """The reduced precisions this device runs natively."""
    return [p for p in REDUCED if not unsupported(p, device, flags)]


@contextlib.contextmanager
def computing_in(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast to `precision`'s dtype on `device`; nothing for fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device.type, dtype=REDUCED[precision]):
        yield


def memory_format(layout: str) -> torch.memory_format:
    return torch.channels_last if layout == "nhwc" else torch.contiguous_format


def in_layout(x: Tensor, layout: str) -> Tensor:
    """An image batch (B, C, H, W) stored in `layout` (same shape, other strides)."""
    return x.contiguous(memory_format=memory_format(layout)) if x.ndim == 4 else x


class CastParts:
    """`NetworkParts` evaluated in a reduced precision, every output handed back as fp32."""

    def __init__(self, parts: NetworkParts, precision: str, device: torch.device) -> None:
        self.inner = parts
        self.precision = precision
        self.device = device
        self.loops = parts.loops

    def stem(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, ...]:
        with computing_in(self.precision, self.device):
            inj = self.inner.stem(x, lengths)
        return tuple(_fp32(t) for t in inj)

    def injection(self, index: int, below: Tensor, inj: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        with computing_in(self.precision, self.device):
            return tuple(_fp32(t) for t in self.inner.injection(index, below, inj))

    def layer(self, index: int, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
        with computing_in(self.precision, self.device):
            return _fp32(self.inner.layer(index, h, inj))

    def head(self, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
        with computing_in(self.precision, self.device):
            return _fp32(self.inner.head(h, inj))

    def profile(
        self, states: tuple[Tensor, ...], logits: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor:
        with computing_in(self.precision, self.device):
            return _fp32(self.inner.profile(states, logits, inj))

    def agent(self, profile: Tensor) -> Tensor:
        with computing_in(self.precision, self.device):
            return _fp32(self.inner.agent(profile))


def _fp32(t: Tensor) -> Tensor:
    return t.float() if t.is_floating_point() else t
