"""Throughput of the service on Ray Serve with 1, 2, ... replicas, side by side in one run, with
the single-process server (`python -m service`) as the baseline.

    python -m benchmarks.ray_replicas --replicas 1,2 --levels 1,8,32 --duration 10 \
        --out reports/bench_ray.json

Each configuration is started fresh (`python -m service.ray` with DYNALAY_RAY_REPLICAS=n, a
local loopback cluster of all this machine's cores, one CPU and one torch thread per replica),
loaded by the closed-loop generator of benchmarks.loadgen with real images for each concurrency
level, and stopped (SIGTERM) before the next starts. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.loadgen import image_bodies, run_load
from benchmarks.servers import free_port, wait_ready

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    description = __doc__.split("\n")[0]
    p = argparse.ArgumentParser(prog="python -m benchmarks.ray_replicas", description=description)
    p.add_argument("--model-dir", type=Path, default=REPO / "checkpoints")
    p.add_argument("--model", default="cifar10", help="an image model of --model-dir")
    p.add_argument("--images", type=Path, default=REPO / "tests" / "fixtures")
    p.add_argument("--replicas", default="1,2", help="replica counts (default: 1,2)")
    p.add_argument("--levels", default="1,8,32", help="concurrency levels (default: 1,8,32)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level (default: 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds per level before measuring")
    p.add_argument("--no-single", action="store_true", help="skip the python -m service baseline")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench_ray.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    bodies = image_bodies(images, args.model, None)
    levels = [int(c) for c in args.levels.split(",")]
    counts = [int(n) for n in args.replicas.split(",")]
    configs = ([] if args.no_single else [("single-process", None)]) + [
        (f"ray-{n}-replica{'s' if n > 1 else ''}", n) for n in counts
    ]
    started = time.time()
    rows = []
    for name, replicas in configs:
        with _serving(args, replicas) as (url, session):
            for level in levels:
                cpu_before, client_before = cpu_seconds_by_role(session), time.process_time()
                result = asyncio.run(run_load(url, bodies, level, args.duration, name, args.warmup))
                row = {"config": name, "replicas": replicas, **result.summary()}
                row["cpu_ms_per_answer"] = _cpu_per_answer(
                    cpu_before,
                    cpu_seconds_by_role(session),
                    time.process_time() - client_before,
                    answers=sum(result.statuses.values()),
                )
                rows.append(row)
                latency = row["latency_ms"]
                print(
                    f"{name:>16} c={level:<3} {row['throughput_rps']:8.1f} req/s  "
                    f"p50 {latency['p50']:8.2f} ms  p99 {latency['p99']:8.2f} ms  "
                    f"errors {row['errors'] or 0}",
                    flush=True,
                )
    report = {"meta": _meta(args, started, len(images)), "rows": rows, "ratios": _ratios(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["ratios"], indent=2))
    print(f"written: {args.out}")
    return report


def cpu_seconds_by_role(session: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of the server's processes, by role: Serve's HTTP
    proxy, the replicas, the rest of Ray, or the single-process server."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[3]) != session:  # field 6 of /proc/PID/stat: the session id
            continue
        role = (
            "proxy"
            if cmdline.startswith(b"ray::ProxyActor")
            else "replicas"
            if cmdline.startswith(b"ray::ServeReplica")
            else "server"
            if b"-m\0service\0" in cmdline + b"\0"
            else "ray_other"
        )
        totals[role] = totals.get(role, 0.0) + (int(stat[11]) + int(stat[12])) / tick
    return totals


def _cpu_per_answer(before: dict, after: dict, client_s: float, answers: int) -> dict:
    """Milliseconds of CPU per answered request, by role, load generator included (measured
    over the warm-up too, so slightly high; the ratios between roles are what matter)."""
    if not answers:
        return {}
    used = {role: after[role] - before.get(role, 0.0) for role in after}
    used["load_generator"] = client_s
    return {role: round(1000.0 * s / answers, 2) for role, s in sorted(used.items())}


def _ratios(rows: list[dict]) -> dict:
    """Throughput of each configuration over the 1-replica one, per concurrency level."""
    base = {r["concurrency"]: r["throughput_rps"] for r in rows if r["replicas"] == 1}
    out: dict[str, dict[str, float | None]] = {}
    for row in rows:
        if row["replicas"] == 1:
            continue
        one = base.get(row["concurrency"])
        ratio = round(row["throughput_rps"] / one, 3) if one else None
        out.setdefault(f"{row['config']} / ray-1-replica", {})[f"c={row['concurrency']}"] = ratio
    return out


def _meta(args, started: float, n_images: int) -> dict:
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "model": args.model,
        "images": n_images,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "device": "cpu",
        "replica": {"num_cpus": 1, "omp_threads": 1},
    }


@contextlib.contextmanager
def _serving(args, replicas: int | None) -> Iterator[tuple[str, int]]:
    """(url, session id of its processes) of a fresh server, stopped with SIGTERM after."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="dlray-bench-", dir="/tmp")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DYNALAY_")},
        "PYTHONPATH": str(REPO),
        "DYNALAY_HOST": "127.0.0.1",
        "DYNALAY_PORT": str(port),
        "DYNALAY_MODEL_DIR": str(args.model_dir),
        "DYNALAY_DEVICE": "cpu",
        "DYNALAY_LOG_LEVEL": "warning",
    }
    if replicas is None:
        command = [sys.executable, "-m", "service"]
    else:
        command = [sys.executable, "-m", "service.ray"]
        env |= {
            "DYNALAY_RAY_REPLICAS": str(replicas),
            "DYNALAY_RAY_METRICS_PORT": str(free_port()),
            "DYNALAY_RAY_TEMP_DIR": temp_dir,
        }
    log = Path(temp_dir) / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with log.open("rb") as written:
            wait_ready(url, server, written, READY_TIMEOUT_S)
        yield url, server.pid  # start_new_session: the session id is the server's pid
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
