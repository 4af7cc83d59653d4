"""The serving benchmark's command line and its interleaved measurement.

The package docstring (benchmarks/serve/__init__.py) describes the loads, what is measured and
how the time slices interleave the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from benchmarks.loadgen import (
    LoadResult,
    answer_alone,
    image_bodies_mixed,
    run_load,
    run_open_load,
    scrape,
    server_split,
)
from benchmarks.serve import __doc__ as PACKAGE_DOC
from benchmarks.serve.loads import LOADS
from benchmarks.serve.ratios import CHECK_LEVEL, OPEN_LOAD, check_targets, compute_ratios
from benchmarks.serve.raw_engine import RawEngine
from benchmarks.serve.report import print_table, run_meta
from benchmarks.serve.rounds import answers_agree, medians
from benchmarks.servers import free_port, spawned_server

SCHEDULINGS = ("batch", "iteration")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.serve", description=PACKAGE_DOC.split("\n")[0]
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=Path("checkpoints"),
        help="model repository (default: checkpoints)",
    )
    p.add_argument("--model", help="model name (default: the first image model)")
    p.add_argument(
        "--images",
        type=Path,
        default=Path("tests/fixtures"),
        help="directory of PNG/JPEG images to send (default: tests/fixtures)",
    )
    p.add_argument("--levels", default="1,8,16,32", help="concurrency levels (default: 1,8,16,32)")
    p.add_argument("--loads", default=",".join(LOADS), help=f"default: {','.join(LOADS)}")
    p.add_argument(
        "--schedulings", default=",".join(SCHEDULINGS), help=f"default: {','.join(SCHEDULINGS)}"
    )
    p.add_argument(
        "--duration", type=float, default=6.0, help="measured seconds per cell (default: 6)"
    )
    p.add_argument(
        "--slices",
        type=int,
        default=6,
        help="time slices a cell's duration is cut into, alternating the servers (default: 6)",
    )
    p.add_argument(
        "--warmup", type=float, default=0.3, help="unmeasured seconds per slice (default: 0.3)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole interleaved grid; ratios use each cell's median (default: 1)",
    )
    p.add_argument(
        "--open-fraction",
        type=float,
        default=0.8,
        help="after the grid, the mixed load open-loop at this fraction of batch scheduling's "
        f"mixed throughput at {CHECK_LEVEL} clients, on every server (0: skip; default: 0.8)",
    )
    p.add_argument("--max-batch-size", type=int, default=32, help="spawned servers (default: 32)")
    p.add_argument("--delay-ms", type=float, default=2.0, help="spawned servers (default: 2)")
    p.add_argument(
        "--pool-size", type=int, help="DYNALAY_LOOP_POOL_SIZE (default: the servers' default)"
    )
    p.add_argument("--device", default="auto", help="auto/cpu/cuda (default: auto)")
    p.add_argument("--engine", default="torch", help="engine name (default: torch)")
    p.add_argument("--api-key", default=os.environ.get("DYNALAY_API_KEY") or None)
    p.add_argument("--note", default="", help="free text stored in the report's meta")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("reports/bench_serve.json"),
        help="JSON output (default: reports/bench_serve.json)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers this run spawned are stopped too.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> dict:
    levels = [int(c) for c in args.levels.split(",")]
    loads = args.loads.split(",")
    schedulings = args.schedulings.split(",")
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if not images:
        raise SystemExit(f"no .png/.jpg images in {args.images}; pass --images DIR")
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    started = time.time()
    with contextlib.ExitStack() as stack:
        urls = {s: stack.enter_context(_server(args, s, levels)) for s in schedulings}
        info = _pick_model(next(iter(urls.values())), args.model)
        bodies = {
            load: image_bodies_mixed(images, info["name"], list(LOADS[load])) for load in loads
        }
        alone = {
            s: {load: [answer_alone(url, b, headers) for b in bodies[load]] for load in loads}
            for s, url in urls.items()
        }
        reference = alone[schedulings[0]]  # every answer under load is compared with this
        raw = RawEngine(args, info["name"], images)
        rounds = []
        for round_no in range(args.rounds):
            for level in levels:
                measured = _measure_level(urls, info["name"], bodies, reference, level, args,
                                          headers, raw)  # fmt: skip
                rounds += [{"round": round_no, **row} for row in measured]
        rate, level = _open_rate(medians(rounds), args.open_fraction)
        if rate:
            for round_no in range(args.rounds):
                measured = _measure_open(urls, info["name"], bodies["mixed"], reference["mixed"],
                                         rate, level, args, headers)  # fmt: skip
                rounds += [{"round": round_no, **row} for row in measured]
    raw_rows = raw.rows()
    server_rows = medians(rounds)
    report = {
        "meta": run_meta(args, info, started, images),
        "answers_alone_agree": answers_agree(alone, schedulings),
        "server": server_rows,
        "raw": raw_rows,
        "ratios": compute_ratios(server_rows, raw_rows, args.max_batch_size),
        "server_rounds": rounds,
    }
    report["checks"] = check_targets(report["ratios"], rounds, report["answers_alone_agree"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwritten: {args.out}")
    return report


def _measure_level(urls, model, bodies, reference, level, args, headers, raw) -> list[dict]:
    """Every load on every server at one concurrency, in time slices taken in turn (the order
    rotates from slice to slice), so whatever else the machine does weighs on every cell of
    the level alike: schedulings and loads are compared side by side. After each turn, a slice
    of the engine alone per load at the matching batch size (the servers idle meanwhile)."""
    cells = [(load, scheduling) for load in bodies for scheduling in urls]
    before = {s: scrape(url, model) for s, url in urls.items()}
    results: dict[tuple[str, str], LoadResult] = {}
    seconds = args.duration / args.slices
    for k in range(args.slices):
        turn = cells[k % len(cells) :] + cells[: k % len(cells)]
        for load, scheduling in turn if k % 2 == 0 else turn[::-1]:
            part = asyncio.run(
                run_load(urls[scheduling], bodies[load], level, seconds, load, args.warmup,
                         headers, reference[load])
            )  # fmt: skip
            if (load, scheduling) in results:
                results[load, scheduling].extend(part)
            else:
                results[load, scheduling] = part
        for load in bodies:
            raw.time(load, min(level, args.max_batch_size), seconds)
    after = {s: scrape(url, model) for s, url in urls.items()}
    rows = []
    for (load, scheduling), result in results.items():
        row = {"scheduling": scheduling, "load": load, **result.summary()}
        # The /metrics deltas span the whole level: every load this server ran in it.
        row["server"] = server_split(before[scheduling], after[scheduling])
        per_action = "  ".join(
            f"{a} p50 {v['latency_ms']['p50']:.1f}" for a, v in row["by_action"].items()
        )
        print(
            f"{load:>9} {scheduling:>9} c={level:<3} {row['throughput_rps']:8.1f} req/s  "
            f"p50 {row['latency_ms']['p50']:7.2f} ms  p99 {row['latency_ms']['p99']:7.2f} ms  "
            f"{per_action}  differing {row['answers_differing']}/{row['answers_compared']}",
            flush=True,
        )
        rows.append(row)
    return rows


def _open_rate(rows: list[dict], fraction: float) -> tuple[float | None, int]:
    """The open-loop arrival rate and the level it comes from: `fraction` of batch
    scheduling's closed-loop mixed throughput at CHECK_LEVEL clients (or at the highest level
    measured below it); None when no such cell was measured or `fraction` is 0."""
    batch_mixed = {r["concurrency"]: r["throughput_rps"] for r in rows
                   if r["scheduling"] == "batch" and r["load"] == "mixed"}  # fmt: skip
    levels = [c for c in batch_mixed if c <= CHECK_LEVEL]
    if fraction <= 0 or not levels:
        return None, CHECK_LEVEL
    level = max(levels)
    return round(fraction * batch_mixed[level], 1), level


def _measure_open(urls, model, bodies, reference, rate, level, args, headers) -> list[dict]:
    """The mixed load at one arrival rate on every server, in time slices taken in turn: both
    schedulings get the same requests at the same times, so their latencies compare at equal
    work (a closed loop gives the server that answers straight inputs sooner more requests)."""
    before = {s: scrape(url, model) for s, url in urls.items()}
    results: dict[str, LoadResult] = {}
    seconds = args.duration / args.slices
    order = list(urls)
    for k in range(args.slices):
        for scheduling in order if k % 2 == 0 else order[::-1]:
            part = asyncio.run(
                run_open_load(urls[scheduling], bodies, rate, seconds, OPEN_LOAD, args.warmup,
                              headers, reference, seed=k, concurrency=level)
            )  # fmt: skip
            if scheduling in results:
                results[scheduling].extend(part)
            else:
                results[scheduling] = part
    after = {s: scrape(url, model) for s, url in urls.items()}
    rows = []
    for scheduling, result in results.items():
        row = {"scheduling": scheduling, "load": OPEN_LOAD, **result.summary()}
        row["offered_rps"] = rate
        row["server"] = server_split(before[scheduling], after[scheduling])
        per_action = "  ".join(
            f"{a} p50 {v['latency_ms']['p50']:.1f}" for a, v in row["by_action"].items()
        )
        print(
            f"{OPEN_LOAD:>9} {scheduling:>9} {rate:6.1f}/s {row['throughput_rps']:8.1f} req/s  "
            f"p50 {row['latency_ms']['p50']:7.2f} ms  {per_action}",
            flush=True,
        )
        rows.append(row)
    return rows


def _pick_model(url: str, name: str | None) -> dict:
    models = httpx.get(f"{url}/models", timeout=10).json()["models"]
    images = [m for m in models if m["modality"] == "image" and (name is None or m["name"] == name)]
    if not images:
        raise SystemExit(f"no image model {name or ''} on {url}: {[m['name'] for m in models]}")
    return images[0]


def _server(
    args: argparse.Namespace, scheduling: str, levels: list[int]
) -> AbstractContextManager[str]:
    """A spawned server of one scheduling, with the benchmark's batching settings."""
    return spawned_server(
        free_port(),
        {
            "DYNALAY_MODEL_DIR": str(args.model_dir.resolve()),
            "DYNALAY_GRPC_PORT": "0",
            "DYNALAY_DEVICE": args.device,
            "DYNALAY_ENGINE": args.engine,
            "DYNALAY_LOOP_SCHEDULING": scheduling,
            "DYNALAY_LOOP_POOL_SIZE": str(args.pool_size or ""),  # empty: the default
            "DYNALAY_MAX_BATCH_SIZE": str(args.max_batch_size),
            "DYNALAY_MAX_QUEUE_DELAY_MS": str(args.delay_ms),
            "DYNALAY_MAX_QUEUE": str(max(1024, 4 * max(levels))),
            "DYNALAY_LOG_LEVEL": "warning",
        },
    )
