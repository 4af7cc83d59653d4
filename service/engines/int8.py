"""int8 for the ONNX engine: post-training static quantization of the convolutional parts.

ONNX Runtime's `quantize_static` rewrites a part's graph in QDQ form: a QuantizeLinear /
DequantizeLinear pair around every Conv, MatMul and Gemm, weights int8 per output channel,
activations uint8 with ranges calibrated (min-max) on what the part sees when the network runs
the checkpoint's calibration set (training images, never test images). ORT's CPU provider fuses
each DQ → Conv → Q into one integer convolution (VNNI, or AMX tiles, where the CPU has them).

Which parts: the stem, the loop layers and the stage transitions (`inject*`), the convolutions
that hold nearly all of a pass's multiply-adds. The head, the profile and the agent stay fp32:
they are a few thousand MACs, and the logits and the agent's decision keep fp32's resolution.
So does the stem's first convolution (the whitening filters on the raw pixels): its outputs
span the widest range of any activation, and uint8 steps there moved the agent's decision on
0.75% of held-out training images against 0.45% with it in fp32, for a few % of a pass's MACs.

Activation ranges are the 99.99th percentile of what each tensor holds over the calibration
run, not its min and max: a handful of extreme values would otherwise stretch the range and
coarsen every other value's steps (on 2,000 held-out training images, with the first
convolution in fp32: actions equal to fp32's on 99.25% with min-max, 99.55% with the
percentile; labels 99.85% and 99.95%).
Each quantized graph ends in DequantizeLinear, so a part hands back fp32 like every other
precision: the loop states, residuals and stop tests stay fp32.

The calibration ranges come from the first CALIBRATION_IMAGES images of the set, each run
through the straight pass and CALIBRATION_ITERATIONS iterations of `loop_all` (so the layers
see their own iterates, whose range settles within a few); the parity gate
(service/engines/parity.py) then checks the result on the whole set.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from model.config import ModelConfig
from model.network import anytime_logits

QUANTIZED_PARTS = ("stem", "layer", "inject")  # name prefixes: the convolutional parts
CALIBRATION_IMAGES = 256
CALIBRATION_ITERATIONS = 4  # loop iterations recorded past the straight pass (or max_iter)
CALIBRATION_BATCH = 32
CALIBRATION_PERCENTILE = 99.99  # of each activation's values, the top of its uint8 range

Part = Callable[[Mapping[str, Tensor]], list[Tensor]]  # an OnnxPart: named feeds → outputs
Feeds = list[dict[str, np.ndarray]]  # one dict per call, the inputs the graph kept


def int8_unsupported(config: ModelConfig, device: torch.device) -> str:
    """Why int8 cannot serve this model here; "" when it can."""
    if device.type != "cpu":
        return f"int8 runs on ONNX Runtime's CPU provider, not {device.type}"
    if config.arch != "cnn":
        return "int8 quantizes convolutions: image (cnn) models only"
    return ""


def quantize_parts(
    paths: Mapping[str, Path],
    parts_of: Callable[[Mapping[str, Part]], object],
    sessions: Mapping[str, Part],
    config: ModelConfig,
    images: Tensor,
    out: Path,
) -> dict[str, Path]:
    """Every part's file, the convolutional ones replaced by int8 graphs written under `out`.

    paths: the fp32 part files; sessions: the fp32 parts, run to record what each one is fed;
    parts_of: builds `NetworkParts` from such parts; images: (N, 3, H, W) normalised."""
    feeds = record_feeds(sessions, parts_of, config, images[:CALIBRATION_IMAGES])
    quantized = dict(paths)
    for name, part_feeds in feeds.items():
        if name.startswith(QUANTIZED_PARTS):
            quantized[name] = _quantize_one(paths[name], part_feeds, out)
    return quantized


def record_feeds(
    sessions: Mapping[str, Part],
    parts_of: Callable[[Mapping[str, Part]], object],
    config: ModelConfig,
    images: Tensor,
) -> dict[str, Feeds]:
    """What each part is fed when the network runs `loop_all` over `images` (module doc)."""
    recorded: dict[str, Feeds] = {name: [] for name in sessions}
    recording = {name: _recording(part, recorded[name]) for name, part in sessions.items()}
    parts = parts_of(recording)
    with torch.no_grad():
        for start in range(0, len(images), CALIBRATION_BATCH):
            batch = images[start : start + CALIBRATION_BATCH]
            iterations = 1 + min(config.max_iter, CALIBRATION_ITERATIONS)
            anytime_logits(parts, batch, iterations=iterations)  # type: ignore[arg-type]
    return {name: calls for name, calls in recorded.items() if calls}


def _recording(part: Part, calls: Feeds) -> Part:
    kept = {i.name for i in part.session.get_inputs()}  # type: ignore[attr-defined]

    def run(feeds: Mapping[str, Tensor]) -> list[Tensor]:
        calls.append({k: v.detach().cpu().numpy().copy() for k, v in feeds.items() if k in kept})
        return part(feeds)

    return run


def _quantize_one(source: Path, feeds: Feeds, out: Path) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._calls: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._calls, None)

    out.mkdir(parents=True, exist_ok=True)
    prepared = out / f"{source.stem}.prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)  # fold, infer shapes
    target = out / f"{source.stem}.int8.onnx"
    quantize_static(
        str(prepared),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.Percentile,
        nodes_to_exclude=kept_fp32(prepared) if source.stem == "stem" else [],
        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
    )
    return target


def kept_fp32(graph: Path) -> list[str]:
    """The node names of a graph that stay fp32: its first convolution (module doc)."""
    import onnx

    nodes = onnx.load(str(graph)).graph.node
    return [next(node.name for node in nodes if node.op_type == "Conv")]


def scratch_dir() -> tempfile.TemporaryDirectory:
    """Where the int8 graphs are written: sessions read them at creation, then they can go."""
    return tempfile.TemporaryDirectory(prefix="dynalay-int8-")
