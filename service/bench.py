"""`python -m service.bench`: the two loop schedulings side by side, and the raw engine.

One run spawns one server per scheduling (`DYNALAY_LOOP_SCHEDULING=batch` and `iteration`, same
model, same settings) and drives them with closed-loop HTTP load of real images. At each
concurrency every load runs on every server in short time slices taken in turn, so whatever else
the machine does at the time weighs on all of them alike:
  * adaptive — the agent decides every input;
  * mixed    — half the requests force `straight`, half `loop_all` (each client alternates);
  * straight / loop_all — every input forced (the references for the two ends).
Per load, concurrency and scheduling: throughput, p50/p95/p99 overall and per answered action,
the server-side queue/compute split from /metrics deltas (per concurrency level), and every
answer compared with the same input sent alone; between the turns, the engine alone in process
at the same batch sizes (the servers idle then). Ratios and the checks that decide whether
iteration scheduling does its job come from this one run. Writes JSON.

    python -m service.bench                               # ~6 min on a 2-core CPU
    python -m service.bench --levels 16 --loads mixed --duration 20 --slices 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import torch

from service.engines import Engine, EngineInput, engine_factories, get_engine_factory
from service.images import ImageSpec, decode_image
from service.loadgen import (
    LoadResult,
    answer_alone,
    answer_differences,
    image_bodies_mixed,
    run_load,
    scrape,
    server_split,
)
from service.repository import discover, resolve_device
from service.settings import default_onnx_cache_dir

ROOT = Path(__file__).resolve().parents[1]  # so the spawned `python -m service` finds us
SCHEDULINGS = ("batch", "iteration")
# load name → the actions its requests force, alternating (None: the agent decides)
LOADS: dict[str, tuple[str | None, ...]] = {
    "adaptive": (None,),
    "mixed": ("straight", "loop_all"),
    "straight": ("straight",),
    "loop_all": ("loop_all",),
}
ACTION_IDS = {None: None, "straight": 0, "loop_l1": 1, "loop_l1_l2": 2, "loop_all": 3}
CHECK_LEVEL = 16  # the concurrency the targets below are stated at
TARGETS = {
    "mixed_straight_p50_over_loop_all_p50": 0.5,  # iteration scheduling, at most
    "mixed_throughput_iteration_over_batch": 0.95,  # at least
    "adaptive_straight_p50_over_all_straight_p50": 1.3,  # iteration scheduling, at most
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m service.bench", description=__doc__.split("\n")[0])
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
        raw = _RawEngine(args, info["name"], images)
        rounds = []
        for round_no in range(args.rounds):
            for level in levels:
                measured = _measure_level(urls, info["name"], bodies, reference, level, args,
                                          headers, raw)  # fmt: skip
                rounds += [{"round": round_no, **row} for row in measured]
    raw_rows = raw.rows()
    server_rows = _medians(rounds)
    report = {
        "meta": _meta(args, info, started, images),
        "answers_alone_agree": _agree(alone, schedulings),
        "server": server_rows,
        "raw": raw_rows,
        "ratios": _ratios(server_rows, raw_rows, args.max_batch_size),
        "server_rounds": rounds,
    }
    report["checks"] = _checks(report["ratios"], rounds, report["answers_alone_agree"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(report)
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


def _medians(rounds: list[dict]) -> list[dict]:
    """One row per (scheduling, load, concurrency): the median over the rounds of throughput
    and of each latency percentile, overall and per answered action; counts summed."""
    groups: dict[tuple, list[dict]] = {}
    for row in rounds:
        groups.setdefault((row["scheduling"], row["load"], row["concurrency"]), []).append(row)
    rows = []
    for (scheduling, load, concurrency), group in groups.items():
        actions = sorted({a for r in group for a in r["by_action"]})
        rows.append({
            "scheduling": scheduling, "load": load, "concurrency": concurrency,
            "rounds": len(group),
            "requests": sum(r["requests"] for r in group),
            "errors": _summed([r["errors"] for r in group]),
            "throughput_rps": _median(r["throughput_rps"] for r in group),
            "latency_ms": _median_latencies([r["latency_ms"] for r in group]),
            "by_action": {
                a: {
                    "answers": sum(r["by_action"].get(a, {}).get("answers", 0) for r in group),
                    "throughput_rps": _median(
                        r["by_action"].get(a, {}).get("throughput_rps", 0.0) for r in group
                    ),
                    "latency_ms": _median_latencies(
                        [r["by_action"][a]["latency_ms"] for r in group if a in r["by_action"]]
                    ),
                }
                for a in actions
            },
            "actions": _summed([r["actions"] for r in group]),
            "layer_evaluations_mean": _median(
                r["layer_evaluations_mean"] for r in group if r["layer_evaluations_mean"]
            ),
            "mean_batch_size": _median(
                r["server"]["mean_batch_size"] for r in group if r["server"]["mean_batch_size"]
            ),
            "answers_compared": sum(r["answers_compared"] for r in group),
            "answers_differing": sum(r["answers_differing"] for r in group),
        })  # fmt: skip
    return rows


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(statistics.median(values)), 3) if values else None


def _median_latencies(latencies: list[dict]) -> dict:
    return {k: _median(lat[k] for lat in latencies) for k in ("mean", "p50", "p95", "p99")}


def _summed(counters: list[dict]) -> dict:
    total: dict = {}
    for counter in counters:
        for key, n in counter.items():
            total[key] = total.get(key, 0) + n
    return total


def _agree(alone: dict[str, dict[str, list[dict]]], schedulings: list[str]) -> dict:
    """Answers sent alone: the same in every scheduling (label, action, iterations ±1, 1e-4)."""
    first, differing, compared = alone[schedulings[0]], [], 0
    for scheduling in schedulings[1:]:
        for load, answers in alone[scheduling].items():
            for index, (want, got) in enumerate(zip(first[load], answers, strict=True)):
                compared += 1
                if answer_differences(want, got):
                    differing.append(f"{scheduling} {load} body {index}")
    return {"compared": compared, "differing": differing, "holds": not differing}


class _RawEngine:
    """The engine alone, in this process, timed slice by slice per (load, batch size)."""

    def __init__(self, args, model: str, images) -> None:
        self.engine = _load_engine(args, model)
        spec = ImageSpec.from_preprocessing(self.engine.meta.preprocessing)
        self.inputs = [decode_image(p.read_bytes(), spec, 10**8) for p in images]
        self.timings: dict[tuple[str, int], _RawTiming] = {}

    def time(self, load: str, size: int, seconds: float) -> None:
        if (load, size) not in self.timings:
            self.timings[load, size] = _RawTiming(self._batch(load, size))
            self.engine.run(self.timings[load, size].batch)  # warm this shape
        self.timings[load, size].time(self.engine, seconds)

    def rows(self) -> list[dict]:
        rows = []
        for (load, size), timing in sorted(self.timings.items()):
            rows.append({"load": load, "batch_size": size, **timing.summary()})
            print(f"raw    {load:>9} b={size:<3} {rows[-1]['throughput_sps']:8.1f} samples/s")
        return rows

    def _batch(self, load: str, size: int) -> list[EngineInput]:
        actions = [ACTION_IDS[a] for a in LOADS[load]]
        n = len(self.inputs)
        return [
            EngineInput(self.inputs[(i // len(actions)) % n], actions[i % len(actions)])
            for i in range(size)
        ]


class _RawTiming:
    def __init__(self, batch: list[EngineInput]) -> None:
        self.batch = batch
        self.batches, self.seconds = 0, 0.0
        self.stages = dict.fromkeys(("straight", "agent", "loop", "head"), 0.0)

    def time(self, engine: Engine, seconds: float) -> None:
        start = time.perf_counter()
        n = 0
        while n == 0 or time.perf_counter() - start < seconds:
            for stage, lap in engine.run(self.batch).stage_seconds.items():
                self.stages[stage] = self.stages.get(stage, 0.0) + lap
            n += 1
        self.batches += n
        self.seconds += time.perf_counter() - start

    def summary(self) -> dict:
        n = self.batches
        return {
            "batches": n,
            "throughput_sps": round(n * len(self.batch) / self.seconds, 2),
            "batch_ms_mean": round(1000.0 * self.seconds / n, 3),
            "stage_ms_per_batch": {k: round(1000.0 * v / n, 3) for k, v in self.stages.items()},
        }


def _load_engine(args, model: str) -> Engine:
    factory = get_engine_factory(args.engine, engine_factories(default_onnx_cache_dir()))
    device = resolve_device(args.device)
    for directory in discover(args.model_dir):
        engine = factory(directory, device)
        if engine.meta.name == model:
            engine.warmup()
            return engine
    raise SystemExit(f"model {model!r} not found under {args.model_dir} for the raw engine run")


def _ratios(server_rows: list[dict], raw_rows: list[dict], max_batch_size: int) -> dict:
    """Scheduling against scheduling, action against action, server against raw engine."""
    table = _Table(server_rows)
    raw = {(r["load"], r["batch_size"]): r["throughput_sps"] for r in raw_rows}

    def iteration_over_batch(load: str, c: int) -> float | None:
        return _ratio(table.rps("iteration", load, c), table.rps("batch", load, c))

    def straight_over_loop_all(s: str, c: int) -> float | None:
        return _ratio(table.p50(s, "mixed", c, "straight"), table.p50(s, "mixed", c, "loop_all"))

    def kept_straight_over_all_straight(s: str, c: int) -> float | None:
        return _ratio(table.p50(s, "adaptive", c, "straight"), table.p50(s, "straight", c))

    def server_over_raw(s: str, load: str, c: int) -> float | None:
        # The server batches at most min(c, max_batch_size) requests: compare with that size.
        return _ratio(table.rps(s, load, c), raw.get((load, min(c, max_batch_size))))

    levels = table.levels
    return {
        "throughput_iteration_over_batch": {
            load: {str(c): iteration_over_batch(load, c) for c in levels} for load in table.loads
        },
        "mixed_straight_p50_over_loop_all_p50": {
            s: {str(c): straight_over_loop_all(s, c) for c in levels} for s in table.schedulings
        },
        "adaptive_straight_p50_over_all_straight_p50": {
            s: {str(c): kept_straight_over_all_straight(s, c) for c in levels}
            for s in table.schedulings
        },
        "server_over_raw": {
            s: {load: {str(c): server_over_raw(s, load, c) for c in levels} for load in table.loads}
            for s in table.schedulings
        },
    }


class _Table:
    """The server rows by (scheduling, load, concurrency)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = {(r["scheduling"], r["load"], r["concurrency"]): r for r in rows}
        self.schedulings = sorted({s for s, _, _ in self.rows})
        self.loads = sorted({load for _, load, _ in self.rows})
        self.levels = sorted({c for _, _, c in self.rows})

    def rps(self, scheduling: str, load: str, c: int) -> float | None:
        row = self.rows.get((scheduling, load, c))
        return row["throughput_rps"] if row else None

    def p50(self, scheduling: str, load: str, c: int, action: str | None = None) -> float | None:
        row = self.rows.get((scheduling, load, c))
        if row is None:
            return None
        if action is None:
            return row["latency_ms"]["p50"]
        answered = row["by_action"].get(action)
        return answered["latency_ms"]["p50"] if answered else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top and bottom else None


def _checks(ratios: dict, server_rows: list[dict], agree: dict) -> dict:
    """The targets at concurrency CHECK_LEVEL, each with its measured value and verdict."""
    level = str(CHECK_LEVEL)

    def at(*path: str) -> float | None:
        node: object = ratios
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, int | float) else None

    measured = {
        "mixed_straight_p50_over_loop_all_p50": at(
            "mixed_straight_p50_over_loop_all_p50", "iteration", level
        ),
        "mixed_throughput_iteration_over_batch": at(
            "throughput_iteration_over_batch", "mixed", level
        ),
        "adaptive_straight_p50_over_all_straight_p50": at(
            "adaptive_straight_p50_over_all_straight_p50", "iteration", level
        ),
    }
    checks: dict = {}
    for name, target in TARGETS.items():
        value = measured[name]
        at_least = name == "mixed_throughput_iteration_over_batch"
        holds = None if value is None else (value >= target if at_least else value <= target)
        checks[name] = {"concurrency": CHECK_LEVEL, "value": value, "target": target,
                        "at_least" if at_least else "at_most": True, "holds": holds}  # fmt: skip
    differing = sum(r["answers_differing"] for r in server_rows)
    compared = sum(r["answers_compared"] for r in server_rows)
    checks["answers_under_load_equal_answers_alone"] = {
        "compared": compared,
        "differing": differing,
        "holds": compared > 0 and differing == 0,
    }
    checks["answers_alone_same_in_both_schedulings"] = {"holds": agree["holds"]}
    return checks


def _meta(args, info: dict, started: float, images) -> dict:
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
        "load_average_at_start": _load_average(),
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


def _load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def _pick_model(url: str, name: str | None) -> dict:
    models = httpx.get(f"{url}/models", timeout=10).json()["models"]
    images = [m for m in models if m["modality"] == "image" and (name is None or m["name"] == name)]
    if not images:
        raise SystemExit(f"no image model {name or ''} on {url}: {[m['name'] for m in models]}")
    return images[0]


@contextlib.contextmanager
def _server(args, scheduling: str, levels: list[int]) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DYNALAY_MODEL_DIR": str(args.model_dir.resolve()),
        "DYNALAY_HOST": "127.0.0.1",
        "DYNALAY_PORT": str(port),
        "DYNALAY_GRPC_PORT": "0",
        "DYNALAY_DEVICE": args.device,
        "DYNALAY_ENGINE": args.engine,
        "DYNALAY_LOOP_SCHEDULING": scheduling,
        "DYNALAY_LOOP_POOL_SIZE": str(args.pool_size or ""),  # empty: the default
        "DYNALAY_MAX_BATCH_SIZE": str(args.max_batch_size),
        "DYNALAY_MAX_QUEUE_DELAY_MS": str(args.delay_ms),
        "DYNALAY_MAX_QUEUE": str(max(1024, 4 * max(levels))),
        "DYNALAY_LOG_LEVEL": "warning",
    }
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "service"], env=env, stdout=log, stderr=log
        )
        try:
            _wait_ready(url, server, log)
            yield url
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_ready(url: str, server: subprocess.Popen, log, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited:\n{log.read().decode()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            ready = httpx.get(f"{url}/readyz", timeout=2)
            if ready.status_code == 200:
                return
            if ready.json().get("error", "").startswith("model loading failed"):
                raise SystemExit(ready.json()["error"])
        time.sleep(0.2)
    raise SystemExit(f"the server at {url} was not ready after {timeout_s} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _print_table(report: dict) -> None:
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


if __name__ == "__main__":
    main()
