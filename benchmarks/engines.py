"""The PyTorch and ONNX Runtime engines side by side on one checkpoint and the same inputs.

    python -m benchmarks.engines CHECKPOINT [--batch-sizes 1 8 32 64] [--device cpu]
                                 [--seconds 2] [--json reports/bench_engines.json]

The same fixed set of inputs (seeded: random images, or random token rows) is cut into batches
of each size and run through each engine until `seconds` have passed (at least 3 passes over
the set). Reported per engine and batch size: throughput (samples/s), mean batch latency, the
action mix the agent chose, mean fixed-point iterations, mean section times, and how often the
two engines agree on action and class. The engine directly, no HTTP or batcher: this measures
the runtimes, not the service.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.actions import ACTIONS
from model.checkpoint import load_checkpoint
from service.core import default_onnx_cache_dir
from service.engines import (
    Engine,
    EngineInput,
    SampleResult,
    cpu_flags,
    engine_factories,
    run_batch,
    runnable,
)

# The CPU features that decide which kernels run (bf16 dot products, AMX tiles, VNNI int8).
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
BATCH_SIZES = (1, 8, 32, 64)
N_INPUTS = 64  # one fixed set, cut into batches of each size: the same work at every size
MIN_PASSES = 3


def bench_inputs(directory: Path, n: int = N_INPUTS, seed: int = 0) -> list[np.ndarray]:
    """Seeded model inputs: normalised-scale images (3, H, W), or token rows (T,)."""
    loaded = load_checkpoint(directory)
    rng = np.random.default_rng(seed)
    if loaded.config.arch == "cnn":
        height, width = loaded.preprocessing.get("image_size", (32, 32))
        shape = (loaded.config.in_channels, int(height), int(width))
        return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]
    longest = min(64, int(loaded.preprocessing.get("max_length", 64)))
    lengths = rng.integers(4, longest + 1, size=n)
    vocab = loaded.config.vocab_size
    return [rng.integers(1, vocab, size=int(t)).astype(np.int64) for t in lengths]


def measure(engine: Engine, inputs: list[np.ndarray], batch_size: int, seconds: float) -> dict:
    """Throughput and what the agent chose, for one engine at one batch size."""
    batches = [
        [EngineInput(x) for x in inputs[i : i + batch_size]]
        for i in range(0, len(inputs), batch_size)
    ]
    spec = engine.spec()
    samples = [s for batch in batches for s in run_batch(spec, batch).samples]  # warms up too
    sections: Counter[str] = Counter()
    passes, started = 0, time.perf_counter()
    while passes < MIN_PASSES or time.perf_counter() - started < seconds:
        for batch in batches:
            sections.update(run_batch(spec, batch).section_seconds)
        passes += 1
    elapsed = time.perf_counter() - started
    runs = passes * len(batches)
    return {
        "engine": engine.name,
        "batch_size": batch_size,
        "samples_per_s": passes * len(inputs) / elapsed,
        "batch_ms": 1000.0 * elapsed / runs,
        "section_ms": {k: 1000.0 * v / runs for k, v in sections.items()},
        "action_mix": _action_mix(samples),
        "mean_iterations": float(np.mean([s.iterations for s in samples])),
        "_samples": samples,
    }


def compare_engines(
    directory: str | Path,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    device: str = "cpu",
    seconds: float = 2.0,
    engines: Sequence[str] = ("torch", "onnx"),
    n_inputs: int = N_INPUTS,
) -> dict[str, Any]:
    """Every engine at every batch size on the same inputs; JSON-ready."""
    directory = Path(directory)
    inputs = bench_inputs(directory, n_inputs)
    rows = []
    for name in engines:
        engine = engine_factories(default_onnx_cache_dir())[name](directory, device)
        engine.warmup()
        rows += [measure(engine, inputs, size, seconds) for size in batch_sizes]
    _add_agreement(rows, engines[0])
    for row in rows:
        del row["_samples"]
    return {"checkpoint": str(directory), "device": device, "host": host(device), "results": rows}


def format_table(report: dict[str, Any]) -> str:
    head = f"{'engine':6} {'batch':>5} {'samples/s':>10} {'batch ms':>9} {'iters':>6}  "
    head += " ".join(f"{a:>10}" for a in ACTIONS) + f"  {'agree':>6}"
    lines = [head]
    for r in report["results"]:
        mix = " ".join(f"{r['action_mix'][a]:>10}" for a in ACTIONS)
        lines.append(
            f"{r['engine']:6} {r['batch_size']:>5} {r['samples_per_s']:>10.1f} "
            f"{r['batch_ms']:>9.2f} {r['mean_iterations']:>6.2f}  {mix}  {r['agreement']:>6.3f}"
        )
    return "\n".join(lines)


def _action_mix(samples: list[SampleResult]) -> dict[str, int]:
    counts = Counter(ACTIONS[s.action] for s in samples)
    return {a: counts.get(a, 0) for a in ACTIONS}


def _add_agreement(rows: list[dict], reference: str) -> None:
    """Share of samples with the same action and class as the reference engine, same size."""
    ref = {r["batch_size"]: r["_samples"] for r in rows if r["engine"] == reference}
    for row in rows:
        pairs = zip(ref[row["batch_size"]], row["_samples"], strict=True)
        same = [(a.action, a.class_index) == (b.action, b.class_index) for a, b in pairs]
        row["agreement"] = float(np.mean(same))


def host(device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: platform, torch, threads, kernel-relevant CPU flags
    and the reduced precisions this device runs natively."""
    flags = cpu_flags()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu_flags": [f for f in KERNEL_FLAGS if f in flags],
        "mkldnn": torch.backends.mkldnn.is_available(),
        "reduced_precisions": runnable(torch.device(device)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engines", description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda" or "cuda:N"')
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine and batch size")
    parser.add_argument("--engines", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--json", type=Path, default=Path("reports/bench_engines.json"))
    args = parser.parse_args(argv)
    report = compare_engines(
        args.checkpoint, args.batch_sizes, args.device, args.seconds, args.engines
    )
    print(format_table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
