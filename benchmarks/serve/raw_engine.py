"""The engine alone, in the benchmark's own process: what the servers' throughput is set against."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.serve.loads import LOADS, action_id
from service.core import default_onnx_cache_dir
from service.engines import Engine, EngineInput, engine_factories, get_engine_factory, run_batch
from service.inputs import ImageSpec, decode_image
from service.repository import discover, resolve_device


class RawEngine:
    """The engine alone, in this process, timed slice by slice per (load, batch size)."""

    def __init__(self, args: argparse.Namespace, model: str, images: list[Path]) -> None:
        self.engine = load_engine(args, model)
        spec = ImageSpec.from_preprocessing(self.engine.meta.preprocessing)
        self.inputs = [decode_image(p.read_bytes(), spec, 10**8) for p in images]
        self.timings: dict[tuple[str, int], RawTiming] = {}

    def time(self, load: str, size: int, seconds: float) -> None:
        if (load, size) not in self.timings:
            self.timings[load, size] = RawTiming(self._batch(load, size))
            run_batch(self.engine.spec(), self.timings[load, size].batch)  # warm this shape
        self.timings[load, size].time(self.engine, seconds)

    def rows(self) -> list[dict]:
        rows = []
        for (load, size), timing in sorted(self.timings.items()):
            rows.append({"load": load, "batch_size": size, **timing.summary()})
            print(f"raw    {load:>9} b={size:<3} {rows[-1]['throughput_sps']:8.1f} samples/s")
        return rows

    def _batch(self, load: str, size: int) -> list[EngineInput]:
        """`size` inputs cycling through the images, each load's actions alternating."""
        actions = [action_id(a) for a in LOADS[load]]
        n = len(self.inputs)
        return [
            EngineInput(self.inputs[(i // len(actions)) % n], actions[i % len(actions)])
            for i in range(size)
        ]


class RawTiming:
    """One batch, run again and again: batches, seconds and per-section seconds so far."""

    def __init__(self, batch: list[EngineInput]) -> None:
        self.batch = batch
        self.batches, self.seconds = 0, 0.0
        self.sections = dict.fromkeys(("straight", "agent", "loop", "head"), 0.0)

    def time(self, engine: Engine, seconds: float) -> None:
        start = time.perf_counter()
        n, spec = 0, engine.spec()
        while n == 0 or time.perf_counter() - start < seconds:
            for section, lap in run_batch(spec, self.batch).section_seconds.items():
                self.sections[section] = self.sections.get(section, 0.0) + lap
            n += 1
        self.batches += n
        self.seconds += time.perf_counter() - start

    def summary(self) -> dict:
        n = self.batches
        return {
            "batches": n,
            "throughput_sps": round(n * len(self.batch) / self.seconds, 2),
            "batch_ms_mean": round(1000.0 * self.seconds / n, 3),
            "section_ms_per_batch": {k: round(1000.0 * v / n, 3) for k, v in self.sections.items()},
        }


def load_engine(args: argparse.Namespace, model: str) -> Engine:
    """The model named `model` under --model-dir, on --engine and --device, warmed up."""
    factory = get_engine_factory(args.engine, engine_factories(default_onnx_cache_dir()))
    device = resolve_device(args.device)
    for directory in discover(args.model_dir):
        engine = factory(directory, device)
        if engine.meta.name == model:
            engine.warmup()
            return engine
    raise SystemExit(f"model {model!r} not found under {args.model_dir} for the raw engine run")
