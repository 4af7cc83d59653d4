"""What the serving benchmark's JSON records about its run, and the table it prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from pathlib import Path

import torch


def run_meta(args: argparse.Namespace, info: dict, started: float, images: list[Path]) -> dict:
    """The model (as the server's /models lists it), the machine and the run's settings."""
    device = info.get("device", "?")
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    return {
        "model": info["name"],
        "version": info.get("version"),
        "engine": info.get("engine"),
        "device": device,
        "gpu": gpu,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_average(),
        "torch": torch.__version__,
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.delay_ms,
        "loop_pool_size": args.pool_size or args.max_batch_size,
        "duration_s": args.duration,
        "slices": args.slices,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "images": [p.name for p in images],
        "note": "load generator and servers share this machine's CPUs; " + args.note,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
    }


def load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def print_table(report: dict) -> None:
    print(f"\n{'load':>9} {'sched':>9} {'conc':>4} {'req/s':>8} {'p50':>8} {'p99':>8} "
          f"{'straight p50':>12} {'looped p50':>10} {'err':>4} {'batch':>6}  (ms)")  # fmt: skip
    for row in report["server"]:
        lat, by = row["latency_ms"], row["by_action"]
        straight = by.get("straight", {}).get("latency_ms", {}).get("p50")
        looped = [v["latency_ms"]["p50"] for a, v in by.items() if a != "straight"]
        print(
            f"{row['load']:>9} {row['scheduling']:>9} {row['concurrency']:>4} "
            f"{row['throughput_rps']:>8.1f} {lat['p50']:>8.2f} {lat['p99']:>8.2f} "
            f"{straight if straight is not None else float('nan'):>12.2f} "
            f"{max(looped) if looped else float('nan'):>10.2f} "
            f"{sum(row['errors'].values()):>4} {row['mean_batch_size'] or 0:>6.1f}"
        )
    print("checks:", json.dumps(report["checks"], indent=1))
