"""Every precision × layout of the PyTorch engine, and the ONNX engine in fp32 and int8, on one
image checkpoint, against the PyTorch engine's fp32 NCHW.

    python -m benchmarks.precisions [CHECKPOINT] [--data-dir data] [--n 256] [--batch-size 32]
                                    [--seconds 5] [--device cpu]
                                    [--json reports/bench_precisions.json]
                                    [--onnx-cache runs/onnx-cache]

The embedded CIFAR-10 model (by default) in this process, no HTTP: the agent decides on the
first `n` CIFAR-10 *test* images (from DATA_DIR; without it, the tests/fixtures PNGs, repeated),
cut into batches of `batch_size`, each mode timed with `benchmarks.engines.measure`. Modes:
fp32 and every reduced precision this device runs natively (service/engines/precision.py),
each in NCHW and NHWC (channels_last); on a CPU also the ONNX engine in fp32 and, where the
checkpoint ships a calibration set, int8 (service/engines/int8.py; ONNX parts exported into
--onnx-cache). Engines are built directly, past the parity gate, so a
mode the gate would refuse is timed too; its agreement with fp32 NCHW (labels, actions) on the
same images is reported beside it. Prints the CPU flags it ran with and each mode's
throughput as a ratio to fp32 NCHW.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.engines import host, measure
from model.calibration import CalibrationSet
from model.checkpoint import load_checkpoint
from service.engines import LAYOUTS, Mode, OnnxEngine, TorchEngine, agreement, int8_engine, runnable
from service.inputs import ImageSpec, decode_image
from training.data.cifar import load_cifar

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ROOT / "checkpoints" / "cifar10"
FIXTURES = ROOT / "tests" / "fixtures"


def cifar_test_inputs(directory: Path, data_dir: Path, n: int) -> tuple[list[np.ndarray], str]:
    """n normalised test images (3, H, W) for the checkpoint, and where they came from."""
    preprocessing = load_checkpoint(directory).preprocessing
    try:
        split = load_cifar("cifar10", data_dir, "test").subset(n)
    except FileNotFoundError:
        spec = ImageSpec.from_preprocessing(preprocessing)
        pngs = sorted(FIXTURES.glob("cifar10_*.png"))
        images = [decode_image(p.read_bytes(), spec, 10**6) for p in pngs]
        return [images[i % len(images)] for i in range(n)], f"{len(pngs)} fixture PNGs"
    x = CalibrationSet(split.images, split.labels).normalised(preprocessing)  # (n, 3, H, W)
    return list(x.numpy()), f"CIFAR-10 test images 0..{len(split) - 1}"


def modes(device: torch.device) -> list[Mode]:
    """fp32 NCHW first (the reference), then every precision here × every layout."""
    return [Mode(p, layout) for p in ("fp32", *runnable(device)) for layout in LAYOUTS]


def onnx_engines(loaded, device: str, cache: Path | None) -> Iterator[tuple[str, Any]]:
    """("fp32", engine) and ("int8", engine) of the ONNX engine, on a CPU with a cache only."""
    if cache is None or device != "cpu":
        return
    yield "fp32", OnnxEngine(loaded, device, cache)
    int8 = int8_engine(loaded, device, cache)
    if int8 is not None:
        yield "int8", int8


def compare_modes(
    directory: Path,
    inputs: list[np.ndarray],
    batch_size: int = 32,
    seconds: float = 5.0,
    device: str = "cpu",
    onnx_cache: Path | None = None,
) -> list[dict[str, Any]]:
    """One row per mode: throughput, stage times, action mix and agreement with the first."""
    loaded = load_checkpoint(directory, device=device)
    rows = []
    for mode in modes(torch.device(device)):
        engine = TorchEngine(loaded, device, mode)  # re-lays the shared weights: one at a time
        engine.warmup()
        row = measure(engine, inputs, batch_size, seconds)
        rows.append({**row, "engine": f"torch {mode}", "mode": str(mode)})
    for name, engine in onnx_engines(loaded, device, onnx_cache):
        engine.warmup()
        row = measure(engine, inputs, batch_size, seconds)
        rows.append({**row, "engine": f"onnx {name}", "mode": f"onnx {name}"})
    reference = rows[0]
    for row in rows:
        labels, actions = agreement(reference["_samples"], row["_samples"])
        row.update(label_agreement=labels, action_agreement=actions)
        row["speedup"] = row["samples_per_s"] / reference["samples_per_s"]
    for row in rows:
        del row["_samples"]
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = f"{'mode':12} {'samples/s':>10} {'vs fp32 nchw':>12} {'labels':>7} {'actions':>8}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['mode']:12} {r['samples_per_s']:>10.1f} {r['speedup']:>11.2f}x "
            f"{r['label_agreement']:>7.3f} {r['action_agreement']:>8.3f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precisions", description=__doc__)
    parser.add_argument("checkpoint", type=Path, nargs="?", default=EMBEDDED)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--n", type=int, default=256, help="test images (default 256)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="per mode (≥ 3 passes)")
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda" or "cuda:N"')
    parser.add_argument("--json", type=Path, default=Path("reports/bench_precisions.json"))
    parser.add_argument("--onnx-cache", type=Path, default=Path("runs/onnx-cache"))
    args = parser.parse_args(argv)
    inputs, source = cifar_test_inputs(args.checkpoint, args.data_dir, args.n)
    machine = host(args.device)
    flags, reduced = " ".join(machine["cpu_flags"]), ", ".join(machine["reduced_precisions"])
    print(f"cpu flags: {flags or '-'}; mkldnn {machine['mkldnn']}; reduced: {reduced or 'none'}")
    print(f"inputs: {source}, batch {args.batch_size}, agent decides")
    rows = compare_modes(
        args.checkpoint, inputs, args.batch_size, args.seconds, args.device, args.onnx_cache
    )
    print(format_rows(rows))
    report = {
        "checkpoint": str(args.checkpoint),
        "device": args.device,
        "inputs": source,
        "batch_size": args.batch_size,
        "host": machine,
        "results": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
