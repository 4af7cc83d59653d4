"""Engine registry: name -> factory `(checkpoint_dir, device) -> Engine`.

The service only ever calls a factory from here, so another runtime (ONNX Runtime) plugs in by
adding one entry with the same signature. Each factory imports its runtime when called: a
runtime that is not installed costs nothing until it is asked for.
"""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path
from typing import Any

from service.engines.base import (
    BatchOutput,
    Engine,
    EngineFactory,
    EngineInput,
    EngineSpec,
    ModelMeta,
    SampleResult,
)
from service.engines.inputs import collate
from service.engines.parity import ParityReport, agreement, fastest_passing, run_set
from service.engines.precision import (
    LAYOUTS,
    SERVE_REFERENCE,
    CastParts,
    Mode,
    PrecisionError,
    PrecisionPolicy,
    cpu_flags,
    runnable,
    unsupported,
)
from service.engines.process import (
    EngineProcessError,
    ProcessEngine,
    RemoteStepper,
    in_own_process,
    open_stepper,
)
from service.engines.stepping import StepOutcome, Stepper, run_batch


def _torch(directory: Path, device: str, policy: PrecisionPolicy = SERVE_REFERENCE) -> Engine:
    from service.engines.torch_engine import load

    return load(directory, device, policy)


def _onnx(
    directory: Path,
    device: str,
    cache_dir: Path | None = None,
    policy: PrecisionPolicy = SERVE_REFERENCE,
) -> Engine:
    from service.engines.onnx_engine import load

    return load(directory, device, cache_dir, policy)


def engine_factories(
    onnx_cache_dir: Path | None = None, precision: PrecisionPolicy = SERVE_REFERENCE
) -> dict[str, EngineFactory]:
    """The registry; with `onnx_cache_dir` the onnx engine exports on load into that cache;
    `precision`: what the engines compute in and the parity gate (fp32, NCHW by default)."""
    return {
        "torch": partial(_torch, policy=precision),
        "onnx": partial(_onnx, cache_dir=onnx_cache_dir, policy=precision),
    }


# Names whose modules import a runtime that may not be installed (ONNX Runtime) or that only
# benchmarks and tests reach for: imported on first use (PEP 562), so `import service.engines`
# costs none of them.
_LAZY = {
    "TorchEngine": "service.engines.torch_engine",
    "OnnxEngine": "service.engines.onnx_engine",
    "OnnxPart": "service.engines.onnx_engine",
    "OnnxParts": "service.engines.onnx_engine",
    "check_providers": "service.engines.onnx_engine",
    "execution_providers": "service.engines.onnx_engine",
    "int8_engine": "service.engines.onnx_engine",
    "OnnxEngineError": "service.engines.onnx_cache",
    "quantize_parts": "service.engines.int8",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


# fp32, NCHW and without a cache: the onnx engine serves only checkpoints that carry their own
# export.
ENGINES: dict[str, EngineFactory] = engine_factories()

__all__ = [
    "ENGINES",
    "LAYOUTS",
    "BatchOutput",
    "CastParts",
    "Engine",
    "EngineFactory",
    "EngineInput",
    "EngineProcessError",
    "EngineSpec",
    "Mode",
    "ModelMeta",
    "OnnxEngine",
    "OnnxEngineError",
    "OnnxPart",
    "OnnxParts",
    "ParityReport",
    "PrecisionError",
    "PrecisionPolicy",
    "ProcessEngine",
    "RemoteStepper",
    "SampleResult",
    "StepOutcome",
    "Stepper",
    "TorchEngine",
    "agreement",
    "check_providers",
    "collate",
    "cpu_flags",
    "engine_factories",
    "execution_providers",
    "fastest_passing",
    "get_engine_factory",
    "in_own_process",
    "int8_engine",
    "open_stepper",
    "quantize_parts",
    "run_batch",
    "run_set",
    "runnable",
    "unsupported",
]


def get_engine_factory(name: str, engines: dict[str, EngineFactory] | None = None) -> EngineFactory:
    """The factory registered under `name`; a ValueError lists the valid names otherwise."""
    registry = ENGINES if engines is None else engines
    if name not in registry:
        raise ValueError(f"unknown engine {name!r}; available: {', '.join(sorted(registry))}")
    return registry[name]
