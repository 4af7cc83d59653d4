"""Export a network's parts (model/onnx_parts.py) as static ONNX graphs, verified against torch.

`export_network(net, weights_sha256)` returns the graphs and their export card; it writes
nothing. Two callers put them somewhere: `python -m training export-onnx CHECKPOINT` adds them
to the checkpoint (its `onnx/` folder and manifest), and the ONNX engine exports on load into a
cache when the checkpoint carries no export (service/engines/onnx_cache.py).

Each part becomes one graph with a dynamic batch axis (and a dynamic time axis for text), so the
engine can loop any subset of samples through any layer. The data-dependent fixed-point loop
stays in Python: ONNX `Loop`/`If` would force a host sync per iteration anyway and blocks CUDA
graphs.

Every graph is checked with `onnx.checker` and run with onnxruntime (CPU) on batches of other
shapes than the traced one, against the PyTorch part in inference mode; the largest absolute
difference per part goes into the card together with the hashes of the weights it came from,
so the engine can refuse a stale export.

The legacy TorchScript exporter (`dynamo=False`) is used on purpose: the torch.export-based one
needs `onnxscript`, which this project does not depend on.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from model.checkpoint import AGENT, BACKBONE
from model.config import ModelConfig
from model.network import DynaLayNet, ModuleParts
from model.onnx_parts import (
    STATE,
    STATE_NAMES,
    Part,
    export_parts,
    injection_names,
    model_inputs,
)

ONNX_DIR = "onnx"
EXPORT_CARD = f"{ONNX_DIR}/export.json"
EXPORT_FORMAT = 1
DEFAULT_OPSET = 17  # LayerNormalization is native from 17; onnxruntime ≥ 1.17 runs it
VERIFY_TOL = 1e-4  # on |onnx − torch| / max(1, |torch|): float32 logits can be large
TRACE_SHAPE = (2, 6)  # (batch, time) the graphs are traced at
VERIFY_SHAPES = ((1, 5), (3, 9))  # other shapes: proves the dynamic axes really are dynamic
_TIME_AXIS_NAMES = {"ids", "u", "mask", STATE, "h_out", *STATE_NAMES}


class ExportError(RuntimeError):
    """An export that failed its checks; nothing was added to the checkpoint."""


@dataclass(frozen=True)
class OnnxExport:
    """A verified export: one graph per part and the card describing them."""

    graphs: dict[str, bytes]  # part name → serialised ONNX model
    card: dict

    def files(self) -> dict[str, bytes]:
        """Relative path → content, laid out as in a checkpoint (`onnx/<part>.onnx`, card)."""
        files = {f"{ONNX_DIR}/{name}.onnx": graph for name, graph in self.graphs.items()}
        files[EXPORT_CARD] = (json.dumps(self.card, indent=2, sort_keys=True) + "\n").encode()
        return files


def export_network(
    net: DynaLayNet,
    weights: dict[str, str],
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    quiet: bool = True,
) -> OnnxExport:
    """Export, check and verify every part of `net` (float32, on the CPU).

    Args:
        weights: the sha256 of the weight files `net` came from (`weights_sha256`), recorded
            in the card so a later load can tell a stale export.
    Raises:
        ExportError: a part differs from PyTorch beyond VERIFY_TOL, or onnx is not installed.
    """
    onnx, _ = _runtimes()
    net = net.float().cpu().eval()
    graphs: dict[str, bytes] = {}
    diffs: dict[str, float] = {}  # part → max |onnx − torch| over the probe batches
    scales: dict[str, float] = {}  # part → max(1, max |torch|), what the tolerance scales with
    trace = _named_tensors(net, *TRACE_SHAPE)
    staged = net.config.stem == "staged"
    probes = [_named_tensors(net, b, t, seed=b) for b, t in VERIFY_SHAPES]
    parts = export_parts(net)
    for part in tqdm(parts, desc="export onnx", disable=quiet):
        graphs[part.name] = _export_part(part, net.config.arch, trace, opset, staged)
        onnx.checker.check_model(onnx.load_from_string(graphs[part.name]), full_check=True)
        if verify:
            pairs = [_compare(part, graphs[part.name], p, staged) for p in probes]
            diffs[part.name] = max(d for d, _ in pairs)
            scales[part.name] = max(s for _, s in pairs)
    bad = {n: d for n, d in diffs.items() if not d <= VERIFY_TOL * scales[n]}  # NaN fails too
    if bad:
        raise ExportError(f"ONNX parts differ from PyTorch beyond {VERIFY_TOL} (relative): {bad}")
    return OnnxExport(graphs, _card(net, parts, weights, opset, diffs, scales))


def weights_sha256(directory: Path) -> dict[str, str]:
    """Hashes of the weight files an export was made from (the engine compares them)."""
    return {name: _sha256((directory / name).read_bytes()) for name in (BACKBONE, AGENT)}


# ---- one part -----------------------------------------------------------------------------


def _export_part(
    part: Part, arch: str, named: dict[str, Tensor], opset: int, staged: bool
) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter warns about its own deprecation and about traced shape reads;
        # the verification below on other shapes is what proves the graph general.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            part.module,
            _args(part, named, staged),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=list(part.inputs),
            output_names=list(part.outputs),
            dynamic_axes=_dynamic_axes(part, arch),
            do_constant_folding=True,
        )
    return buffer.getvalue()


def _dynamic_axes(part: Part, arch: str) -> dict[str, dict[int, str]]:
    axes = {}
    for name in (*part.inputs, *part.outputs):
        axes[name] = {0: "batch"}
        if arch == "lstm" and name in _TIME_AXIS_NAMES:
            axes[name][1] = "time"
    return axes


def _compare(
    part: Part, graph: bytes, named: dict[str, Tensor], staged: bool
) -> tuple[float, float]:
    """(max |onnx − torch|, max(1, max |torch|)) over the part's outputs."""
    session = _runtimes()[1].InferenceSession(graph, providers=["CPUExecutionProvider"])
    args = _args(part, named, staged)
    # An input the part never reads (the CNN head's u) is dropped from the graph by the tracer.
    wanted = {i.name for i in session.get_inputs()}
    feeds = {n: t.numpy() for n, t in zip(part.inputs, args, strict=True) if n in wanted}
    got = session.run(list(part.outputs), feeds)
    with torch.inference_mode():
        want = part.module.eval()(*args)
    want = want if isinstance(want, tuple) else (want,)
    pairs = list(zip(got, [w.numpy() for w in want], strict=True))
    diff = max(float(np.abs(g - w).max()) for g, w in pairs)
    return diff, max(1.0, *(float(np.abs(w).max()) for _, w in pairs))


# What each part reads in the straight pass: input name → the named tensor it is traced with.
_CHAINED_ARGS = {
    "layer1": {STATE: "u"},
    "layer2": {STATE: "z1"},
    "layer3": {STATE: "z2"},
    "head": {STATE: "z3"},
}
# Staged: stage i starts from its own injection u_i (model/loops.py `StagedLoop`).
_STAGED_ARGS = {
    **{f"layer{i}": {STATE: f"u{i}", "u": f"u{i}"} for i in (1, 2, 3)},
    "inject2": {STATE: "z1"},
    "inject3": {STATE: "z2"},
    "head": {STATE: "z3"},
}


def _args(part: Part, named: dict[str, Tensor], staged: bool) -> tuple[Tensor, ...]:
    """The part's positional inputs, as that part sees them in the straight pass."""
    reads = (_STAGED_ARGS if staged else _CHAINED_ARGS).get(part.name, {})
    return tuple(named[reads.get(n, n)] for n in part.inputs)


# ---- realistic inputs ---------------------------------------------------------------------


def _named_tensors(net: DynaLayNet, batch: int, time: int, seed: int = 0) -> dict[str, Tensor]:
    """Every tensor a part can take, from a real straight pass on random inputs."""
    inputs = _model_inputs(net.config, batch, time, seed)
    with torch.no_grad():
        straight = net.straight(*inputs)
    arch = net.config.arch
    named = dict(zip(model_inputs(arch), inputs, strict=True))
    named.update(zip(injection_names(arch), straight.inj, strict=True))
    named.update(zip(STATE_NAMES, straight.states, strict=True))
    named["logits"], named["profile"] = straight.logits, straight.profile
    if net.config.stem == "staged":  # each stage's injection: u1 = u, u_i from the stage below
        parts = ModuleParts(net)
        named["u1"] = straight.inj[0]
        with torch.no_grad():
            for i in (2, 3):
                below = straight.states[i - 2]
                named[f"u{i}"] = parts.injection(i - 1, below, straight.inj)[0]
    return named


def _model_inputs(cfg: ModelConfig, batch: int, time: int, seed: int) -> tuple[Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    if cfg.arch == "cnn":
        return (torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=gen),)
    lengths = torch.randint(1, time + 1, (batch,), generator=gen)
    lengths[0] = time  # the batch's longest row fills the time axis, as the engine pads it
    ids = torch.randint(1, cfg.vocab_size, (batch, time), generator=gen)
    ids[torch.arange(time)[None, :] >= lengths[:, None]] = 0  # padding at the end
    return ids, lengths


# ---- the export card ----------------------------------------------------------------------


def _card(
    net: DynaLayNet,
    parts: list[Part],
    weights: dict[str, str],
    opset: int,
    diffs: dict[str, float],
    scales: dict[str, float],
) -> dict:
    return {
        "format": EXPORT_FORMAT,
        "arch": net.config.arch,
        "opset": opset,
        "parts": {
            p.name: {"file": f"{ONNX_DIR}/{p.name}.onnx", "inputs": p.inputs, "outputs": p.outputs}
            for p in parts
        },
        "verified_max_abs_diff": diffs or None,
        "scale": scales or None,
        "weights_sha256": weights,
        "versions": {
            "torch": torch.__version__,
            **{m.__name__: m.__version__ for m in _runtimes()},
        },
    }


def _runtimes() -> tuple[ModuleType, ModuleType]:
    """onnx and onnxruntime, imported on use: `python -m training` must work without them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ExportError(
            f"the ONNX export needs onnx and onnxruntime ({err.name} is missing): "
            "pip install -e '.[onnx]' (CPU) or '.[gpu]' (CUDA)"
        ) from err
    return onnx, onnxruntime


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
