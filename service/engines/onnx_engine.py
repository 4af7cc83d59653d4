"""The ONNX Runtime engine: the exported parts run by onnxruntime, the adaptive loop in Python.

Same algorithm and results as the PyTorch engine (service/engines/torch_engine.py): this engine
only supplies the parts (`OnnxParts`: stem, layers, head, profile, agent as ONNX sessions) and
the shared stepper (service/engines/stepping.py) runs the straight pass, the agent (greedy, or
the forced action), the per-sample fixed-point loops (relative residual, tol and max_iter from
the checkpoint's config, best iterate otherwise) and the finish. Only the layer evaluations
change runtime.

States live in torch tensors on the engine's device and every session call binds them by
pointer (IOBinding), on CPU as on CUDA, so nothing is copied between steps; on CUDA, ORT runs on
torch's current stream, so both see one ordered queue of kernels. A session that silently fell
back to the CPU when CUDA was asked for is an error: the service then never turns ready.

The parts come from the checkpoint's own export or, failing that, are exported on load into
a verified cache (service/engines/onnx_cache.py).

Precision: fp32, or int8 on the CPU (service/engines/int8.py: the convolutional parts
quantized statically on the checkpoint's calibration set), chosen by the same parity gate as
the PyTorch engine's (service/engines/parity.py). ONNX Runtime's CPU provider has no bf16
kernels for these graphs and fp16 would need an fp16 export: those are refused here (the
PyTorch engine runs them). The graphs are NCHW; the layout setting does not apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from model.actions import LAYER_NAMES
from model.calibration import load_calibration
from model.checkpoint import LoadedCheckpoint, load_checkpoint
from model.config import ModelConfig
from model.loops import loop_kind
from model.onnx_parts import (
    LOGITS,
    PROFILE,
    STATE,
    STATE_NAMES,
    injection_names,
    model_inputs,
    part_names,
)
from service.engines.base import EngineInput, EngineSpec, ModelMeta
from service.engines.inputs import collate, warmup_batch
from service.engines.int8 import int8_unsupported, quantize_parts, scratch_dir
from service.engines.onnx_cache import ExportLocation, OnnxEngineError, locate_export
from service.engines.parity import select_mode
from service.engines.precision import AUTO, SERVE_REFERENCE, Mode, PrecisionError, PrecisionPolicy
from service.engines.stepping import run_batch

_TORCH_DTYPES = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(int64)": torch.int64,
}
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64}


class OnnxEngine:
    name = "onnx"
    layout = "nchw"  # see the module doc

    def __init__(
        self,
        loaded: LoadedCheckpoint,
        device: str,
        cache_dir: Path | None = None,
        int8_images: Tensor | None = None,
    ) -> None:
        """fp32, or int8 when given `int8_images` (N, 3, H, W) normalised to calibrate on."""
        self.device = device
        self.meta = ModelMeta.from_checkpoint(loaded)
        self.config = loaded.config
        self.precision = "fp32" if int8_images is None else "int8"
        self._macs = loaded.net.action_macs  # counted on the checkpoint's own network
        self._torch_device = torch.device(device)
        self.export: ExportLocation = locate_export(loaded, cache_dir)
        providers = execution_providers(self._torch_device)
        names = part_names(loaded.config)
        paths = {name: self.export.part_path(name) for name in names}
        self._parts = {name: OnnxPart(paths[name], providers, device) for name in names}
        if int8_images is not None:
            with scratch_dir() as scratch:  # sessions read their graph at creation
                paths = quantize_parts(
                    paths, self._parts_of, self._parts, self.config, int8_images, Path(scratch)
                )
                self._parts = {name: OnnxPart(paths[name], providers, device) for name in names}

    def _parts_of(self, parts: Mapping[str, OnnxPart]) -> OnnxParts:
        return OnnxParts(parts, self.config)

    @property
    def providers(self) -> list[str]:
        """The providers the sessions actually run on, best first."""
        return self._parts["stem"].session.get_providers()

    def spec(self) -> EngineSpec:
        config = self.config
        return EngineSpec(
            OnnxParts(self._parts, self.config),
            partial(collate, modality=self.meta.modality, device=self._torch_device),
            config.solver,
            config.tol,
            config.max_iter,
            self._torch_device,
            self._macs,
        )

    def warmup(self) -> None:
        run_batch(self.spec(), warmup_batch(self.meta))


class OnnxParts:
    """`model.parts.NetworkParts` evaluated by the exported ONNX sessions."""

    def __init__(self, parts: Mapping[str, OnnxPart], config: ModelConfig) -> None:
        self._parts = parts
        self._stem_inputs = model_inputs(config.arch)
        self._inj_names = injection_names(config.arch)
        self.loops = loop_kind(config)

    def stem(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, ...]:
        given = (x,) if lengths is None else (x, lengths)
        feeds = dict(zip(self._stem_inputs, given, strict=True))
        return tuple(self._parts["stem"](feeds))  # u (B, ...) [, mask (B, T, 1)]

    def injection(self, index: int, below: Tensor, inj: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Staged layout: stage `index`'s injection from the state below (u for stage 0)."""
        return inj if index == 0 else (self._parts[f"inject{index + 1}"]({STATE: below})[0],)

    def layer(self, index: int, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
        return self._parts[LAYER_NAMES[index]]({STATE: h, **self._inj(inj)})[0]

    def head(self, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
        return self._parts["head"]({STATE: h, **self._inj(inj)})[0]

    def profile(
        self, states: tuple[Tensor, ...], logits: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor:
        named = {**dict(zip(STATE_NAMES, states, strict=True)), LOGITS: logits}
        return self._parts["profile"]({**named, **self._inj(inj)})[0]  # (B, P)

    def agent(self, profile: Tensor) -> Tensor:
        return self._parts["agent"]({PROFILE: profile})[0]  # (B, 4)

    def _inj(self, inj: Sequence[Tensor]) -> dict[str, Tensor]:
        return dict(zip(self._inj_names, inj, strict=True))


# ---- one session ------------------------------------------------------------------------------


class OnnxPart:
    """One exported part: torch tensors in, torch tensors out, bound by pointer (no copies)."""

    def __init__(self, path: Path, providers: list, device: str) -> None:
        ort = _onnxruntime()
        self.session = ort.InferenceSession(str(path), _session_options(), providers=providers)
        check_providers(self.session, providers, path)
        torch_device = torch.device(device)
        self._device = torch_device
        self._where = (torch_device.type, torch_device.index or 0)  # ORT's (device_type, id)
        self._inputs = [(i.name, i.shape) for i in self.session.get_inputs()]
        self._outputs = [
            (o.name, o.shape, _TORCH_DTYPES[o.type]) for o in self.session.get_outputs()
        ]

    def __call__(self, feeds: Mapping[str, Tensor]) -> list[Tensor]:
        binding = self.session.io_binding()
        dims: dict[str, int] = {}  # symbolic axis name ("batch", "time") → size in this call
        kept = []  # the bound tensors must outlive the run
        for name, shape in self._inputs:  # only the inputs this graph kept (see export)
            tensor = feeds[name].contiguous()
            dims.update(
                (d, n) for d, n in zip(shape, tensor.shape, strict=True) if isinstance(d, str)
            )
            binding.bind_input(
                name, *self._where, _numpy(tensor), tuple(tensor.shape), tensor.data_ptr()
            )
            kept.append(tensor)
        outputs = []
        for name, shape, dtype in self._outputs:
            out = torch.empty(
                [dims[d] if isinstance(d, str) else d for d in shape],
                dtype=dtype,
                device=self._device,
            )
            binding.bind_output(name, *self._where, _numpy(out), tuple(out.shape), out.data_ptr())
            outputs.append(out)
        self.session.run_with_iobinding(binding)
        return outputs


def _session_options() -> Any:
    options = _onnxruntime().SessionOptions()
    # ORT's intra-op threads spin-wait after each run by default. Between our many short runs
    # torch does the loop's book-keeping with its own thread pool on the same cores, so the
    # spinning threads would only compete with it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _numpy(tensor: Tensor) -> type:
    return _NUMPY_DTYPES[tensor.dtype]


def _onnxruntime() -> Any:
    # Imported after torch (this module imports it first) so torch's bundled CUDA and cuDNN
    # libraries are already loaded when the CUDA provider looks for them: onnxruntime-gpu
    # finds them in the process instead of needing its own CUDA install.
    import onnxruntime

    return onnxruntime


# ---- providers --------------------------------------------------------------------------------


def execution_providers(device: torch.device) -> list:
    """CPU provider for "cpu"; CUDA (on torch's stream) then CPU for "cuda[:n]"."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise OnnxEngineError(f"the onnx engine runs on cpu or cuda, not {device}")
    available = _onnxruntime().get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise OnnxEngineError(
            f"CUDA was requested but this onnxruntime offers only {available}: install "
            "onnxruntime-gpu (the `gpu` extra) instead of onnxruntime, or serve on the CPU"
        )
    index = device.index or 0
    options = {
        "device_id": str(index),
        # torch's stream: ORT's kernels queue behind the torch ops that filled their inputs.
        "user_compute_stream": str(torch.cuda.current_stream(index).cuda_stream),
        # The loop sees a new batch size whenever samples converge; EXHAUSTIVE would benchmark
        # cuDNN algorithms for every one of those shapes on first sight.
        "cudnn_conv_algo_search": "HEURISTIC",
    }
    return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]


def check_providers(session: Any, providers: list, path: Path) -> None:
    # When the CUDA provider cannot start, ORT only logs "Failed to create
    # CUDAExecutionProvider" and runs the session on the CPU: a GPU request would silently be
    # served at CPU speed, so the session's providers are checked here.
    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    got = session.get_providers()
    if got[0] != wanted:
        raise OnnxEngineError(
            f"{path}: asked onnxruntime for {wanted} but the session runs on {got} (silent "
            "fallback: check that the CUDA/cuDNN libraries match the onnxruntime-gpu wheel)"
        )


def load(
    directory: Path,
    device: str,
    cache_dir: Path | None = None,
    policy: PrecisionPolicy = SERVE_REFERENCE,
) -> OnnxEngine:
    """The registry factory: (checkpoint directory, device) -> engine, in the precision `policy`
    and the parity gate choose (fp32 or int8, module doc).

    `load_checkpoint` verifies the manifest (ONNX files included) and reads the config; the
    PyTorch network it also builds is only used to export into `cache_dir` when the checkpoint
    carries no current export, and dropped after.
    """
    loaded = load_checkpoint(directory, device="cpu")
    torch_device = torch.device(device)
    why_not = partial(unsupported, config=loaded.config, device=torch_device)
    if policy.precision != AUTO and why_not(policy.precision):  # before any export or session
        raise PrecisionError(f"precision {policy.precision}: {why_not(policy.precision)}")
    fp32 = OnnxEngine(loaded, device, cache_dir)
    if policy.precision == "fp32":
        return fp32
    images = calibration_images(loaded)
    engines = {"fp32": fp32}

    def build(mode: Mode) -> OnnxEngine:
        if mode.precision not in engines:  # int8: quantized once, on the calibration images
            engines[mode.precision] = OnnxEngine(loaded, device, cache_dir, int8_images=images)
        return engines[mode.precision]

    inputs = None if images is None else [EngineInput(x) for x in images.numpy()]
    gate_policy = PrecisionPolicy(
        policy.precision, "nchw", policy.min_label_agreement, policy.min_action_agreement
    )
    mode, _ = select_mode(build, gate_policy, torch_device, inputs, None, ("int8",), why_not)
    return build(mode)


def calibration_images(loaded: LoadedCheckpoint) -> Tensor | None:
    """The checkpoint's calibration images (N, 3, H, W), normalised; None without a set."""
    calibration = load_calibration(loaded.directory)
    return None if calibration is None else calibration.normalised(loaded.preprocessing)


def int8_engine(loaded: LoadedCheckpoint, device: str, cache_dir: Path | None) -> OnnxEngine | None:
    """The int8 engine calibrated on the checkpoint's set, past the gate (benchmarks, reports);
    None when the checkpoint ships no set or int8 cannot run here."""
    images = calibration_images(loaded)
    if images is None or int8_unsupported(loaded.config, torch.device(device)):
        return None
    return OnnxEngine(loaded, device, cache_dir, int8_images=images)


def unsupported(precision: str, config: ModelConfig, device: torch.device) -> str:
    """Why this engine cannot compute `config`'s model in `precision` on `device`; "" if it can."""
    if precision == "int8":
        return int8_unsupported(config, device)
    if precision in ("fp32", AUTO):
        return ""
    return (
        f"the onnx engine computes in fp32 or int8 (ONNX Runtime has no {precision} kernels for "
        "these graphs here); serve it with DYNALAY_ENGINE=torch"
    )
