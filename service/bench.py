"""`python -m service.bench`: throughput and latency of the server, next to the raw engine.

One run measures, for the adaptive agent and for every input forced to `loop_all` and to
`straight`:
  * the server (spawned here from --model-dir, or a running one at --url) under closed-loop
    load at several concurrency levels: throughput, p50/p95/p99, errors, and the server-side
    queue/compute split taken from /metrics deltas;
  * the engine alone, in process, at the same batch sizes (after the server has stopped, so the
    two never compete for the CPU);
so the ratios server/raw and adaptive/loop_all come from the same run. Writes JSON.

    python -m service.bench                          # ~1 min on CPU with the defaults
    python -m service.bench --url http://host:8000 --levels 1,8,32,64 --duration 10
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
from service.loadgen import image_bodies, run_load, scrape, server_split
from service.repository import discover, resolve_device
from service.settings import default_onnx_cache_dir

ROOT = Path(__file__).resolve().parents[1]  # so the spawned `python -m service` finds us
MODES = ("adaptive", "loop_all", "straight")
ACTION_IDS = {"adaptive": None, "loop_l1": 1, "loop_l1_l2": 2, "loop_all": 3, "straight": 0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m service.bench", description=__doc__.split("\n")[0])
    p.add_argument("--url", help="drive this running server (default: spawn one)")
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
    p.add_argument("--levels", default="1,4,16", help="concurrency levels (default: 1,4,16)")
    p.add_argument("--modes", default=",".join(MODES), help=f"default: {','.join(MODES)}")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per level (default: 3)")
    p.add_argument(
        "--warmup", type=float, default=0.5, help="unmeasured seconds per level (default: 0.5)"
    )
    p.add_argument(
        "--raw-seconds",
        type=float,
        default=1.0,
        help="seconds per raw engine measurement (default: 1)",
    )
    p.add_argument("--max-batch-size", type=int, default=32, help="spawned server (default: 32)")
    p.add_argument("--delay-ms", type=float, default=2.0, help="spawned server (default: 2)")
    p.add_argument("--device", default="auto", help="auto/cpu/cuda (default: auto)")
    p.add_argument("--engine", default="torch", help="engine name (default: torch)")
    p.add_argument("--api-key", default=os.environ.get("DYNALAY_API_KEY") or None)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("reports/bench_serve.json"),
        help="JSON output (default: reports/bench_serve.json)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    levels = [int(c) for c in args.levels.split(",")]
    modes = args.modes.split(",")
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if not images:
        raise SystemExit(f"no .png/.jpg images in {args.images}; pass --images DIR")
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    started = time.time()
    with _server(args) as url:
        info = _pick_model(url, args.model)
        server_rows = [
            _measure_level(url, info["name"], images, mode, level, args, headers)
            for mode in modes
            for level in levels
        ]
    raw_rows = _raw_engine(args, info["name"], images, modes, levels)
    report = {
        "meta": _meta(args, info, started, images),
        "server": server_rows,
        "raw": raw_rows,
        "ratios": _ratios(server_rows, raw_rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    _print_table(report)
    print(f"\nwritten: {args.out}")
    return report


def _measure_level(url, model, images, mode, level, args, headers) -> dict:
    bodies = image_bodies(images, model, None if mode == "adaptive" else mode)
    before = scrape(url, model)
    result = asyncio.run(
        run_load(url, bodies, level, args.duration, mode, args.warmup, headers=headers)
    )
    row = result.summary()
    row["server"] = server_split(before, scrape(url, model))
    print(
        f"server {mode:>9} c={level:<3} {row['throughput_rps']:8.1f} req/s  "
        f"p50 {row['latency_ms']['p50']:7.2f} ms  p99 {row['latency_ms']['p99']:7.2f} ms",
        flush=True,
    )
    return row


def _raw_engine(args, model: str, images, modes, levels) -> list[dict]:
    engine = _load_engine(args, model)
    spec = ImageSpec.from_preprocessing(engine.meta.preprocessing)
    inputs = [decode_image(p.read_bytes(), spec, 10**8) for p in images]
    sizes = sorted({min(level, args.max_batch_size) for level in levels})
    rows = []
    for mode in modes:
        for size in sizes:
            batch = [EngineInput(inputs[i % len(inputs)], ACTION_IDS[mode]) for i in range(size)]
            rows.append(_time_batches(engine, batch, mode, args.raw_seconds))
            print(f"raw    {mode:>9} b={size:<3} {rows[-1]['throughput_sps']:8.1f} samples/s")
    return rows


def _time_batches(engine: Engine, batch: list[EngineInput], mode: str, seconds: float) -> dict:
    engine.run(batch)  # warm this shape
    n, stages = 0, dict.fromkeys(("straight", "agent", "loop", "head"), 0.0)
    start = time.perf_counter()
    while n == 0 or time.perf_counter() - start < seconds:
        out = engine.run(batch)
        n += 1
        for stage, s in out.stage_seconds.items():
            stages[stage] = stages.get(stage, 0.0) + s
    elapsed = time.perf_counter() - start
    return {
        "mode": mode,
        "batch_size": len(batch),
        "batches": n,
        "throughput_sps": round(n * len(batch) / elapsed, 2),
        "batch_ms_mean": round(1000.0 * elapsed / n, 3),
        "stage_ms_per_batch": {k: round(1000.0 * v / n, 3) for k, v in stages.items()},
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


def _ratios(server_rows: list[dict], raw_rows: list[dict]) -> dict:
    """Server/raw throughput at the matching batch size, and mode-to-mode ratios."""
    raw = {(r["mode"], r["batch_size"]): r["throughput_sps"] for r in raw_rows}
    served = {(r["mode"], r["concurrency"]): r["throughput_rps"] for r in server_rows}
    sizes = sorted({size for _, size in raw})
    levels = sorted({level for _, level in served})

    def raw_at(mode: str, level: int) -> float | None:
        # The server can batch at most min(level, max_batch_size) requests: compare with that.
        size = max((s for s in sizes if s <= level), default=None)
        return raw.get((mode, size))

    def ratio(top: float | None, bottom: float | None) -> float | None:
        return round(top / bottom, 3) if top and bottom else None

    def by_level(top: str, bottom: str) -> dict:
        return {str(c): ratio(served.get((top, c)), served.get((bottom, c))) for c in levels}

    return {
        "server_over_raw": {
            mode: {
                str(c): ratio(rps, raw_at(mode, c)) for (m, c), rps in served.items() if m == mode
            }
            for mode in sorted({m for m, _ in served})
        },
        "adaptive_over_loop_all": by_level("adaptive", "loop_all"),
        "straight_over_adaptive": by_level("straight", "adaptive"),
        "raw_adaptive_over_loop_all": {
            str(b): ratio(raw.get(("adaptive", b)), raw.get(("loop_all", b))) for b in sizes
        },
    }


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
        "torch": torch.__version__,
        "url": args.url or "spawned",
        "max_batch_size": None if args.url else args.max_batch_size,
        "max_queue_delay_ms": None if args.url else args.delay_ms,
        "duration_s": args.duration,
        "images": [p.name for p in images],
        "note": "load generator and server share this machine's CPUs",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
    }


def _pick_model(url: str, name: str | None) -> dict:
    models = httpx.get(f"{url}/models", timeout=10).json()["models"]
    images = [m for m in models if m["modality"] == "image" and (name is None or m["name"] == name)]
    if not images:
        raise SystemExit(f"no image model {name or ''} on {url}: {[m['name'] for m in models]}")
    return images[0]


@contextlib.contextmanager
def _server(args) -> Iterator[str]:
    if args.url:
        yield args.url.rstrip("/")
        return
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
        "DYNALAY_MAX_BATCH_SIZE": str(args.max_batch_size),
        "DYNALAY_MAX_QUEUE_DELAY_MS": str(args.delay_ms),
        "DYNALAY_MAX_QUEUE": str(max(1024, 4 * max(int(c) for c in args.levels.split(",")))),
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
    print(f"\n{'mode':>9} {'conc':>4} {'req/s':>8} {'p50':>8} {'p95':>8} {'p99':>8} {'err':>4} "
          f"{'batch':>6} {'queue':>7} {'compute':>8}  (ms)")  # fmt: skip
    for row in report["server"]:
        lat, srv = row["latency_ms"], row["server"]
        compute = sum(v for v in srv["compute_ms_per_batch"].values() if v)
        print(
            f"{row['mode']:>9} {row['concurrency']:>4} {row['throughput_rps']:>8.1f} "
            f"{lat['p50']:>8.2f} {lat['p95']:>8.2f} {lat['p99']:>8.2f} "
            f"{sum(row['errors'].values()):>4} {srv['mean_batch_size'] or 0:>6.1f} "
            f"{srv['queue_ms_mean'] or 0:>7.2f} {compute:>8.2f}"
        )
    print("ratios:", json.dumps(report["ratios"]))


if __name__ == "__main__":
    main()
