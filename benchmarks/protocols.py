"""`python -m benchmarks.protocols`: one server, the same tensors, three wire formats.

Drives a spawned `python -m service` (or a running one) with NVIDIA's tritonclient, closed
loop, FP32 `input` tensors of real CIFAR-10 fixture images (normalised as the checkpoint asks):

  * json   — tritonclient.http, inputs and outputs as JSON `data` lists;
  * binary — tritonclient.http, the binary tensor data extension both ways;
  * grpc   — tritonclient.grpc (raw_input_contents / raw_output_contents);

at request batch sizes 1 and 16, `--concurrency` client processes each. The formats take turns in
`--rounds` rounds, so drift on a shared machine hits all three alike; each row reports the
median round. Writes JSON (default reports/bench_protocols.json).

    python -m benchmarks.protocols                       # ~1.5 min on 2 CPU cores
    python -m benchmarks.protocols --batches 1,16 --duration 5 --rounds 3 --concurrency 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np

from benchmarks.servers import free_port, spawned_server
from service.inputs import ImageSpec, decode_image

FORMATS = ("json", "binary", "grpc")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.protocols", description=__doc__)
    p.add_argument("--url", help="a running server's HTTP base URL (default: spawn one)")
    p.add_argument("--grpc", help="its gRPC host:port (with --url)")
    p.add_argument("--model-dir", type=Path, default=Path("checkpoints"))
    p.add_argument("--model", default="cifar10")
    p.add_argument("--images", type=Path, default=Path("tests/fixtures"))
    p.add_argument("--batches", default="1,16", help="samples per request (default: 1,16)")
    p.add_argument("--concurrency", type=int, default=2, help="clients per format (default: 2)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=3, help="turns of the three formats")
    p.add_argument("--server-threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    p.add_argument("--out", type=Path, default=Path("reports/bench_protocols.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    with _server(args) as (url, grpc_address):
        preprocessing = _model(url, args.model)["preprocessing"]
        images = _images(args.images, preprocessing)
        rows = []
        with multiprocessing.get_context("spawn").Pool(args.concurrency) as pool:
            pool.map(_import_clients, range(args.concurrency))  # before any clock starts
            for batch in (int(b) for b in args.batches.split(",")):
                x = np.stack([images[i % len(images)] for i in range(batch)])  # (B, 3, H, W)
                target = (url, grpc_address, args.model, x)
                rounds = {fmt: [] for fmt in FORMATS}
                for _ in range(args.rounds):
                    for fmt in FORMATS:
                        measured = _closed_loop(pool, fmt, target, args.concurrency, args.duration)
                        rounds[fmt].append(measured)
                rows += [_summary(fmt, batch, rounds[fmt]) for fmt in FORMATS]
    report = {"meta": _meta(args, started), "results": rows, "ratios": _ratios(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    return 0


# ---- the three clients ------------------------------------------------------------------------


def _client_call(fmt: str, url: str, grpc_address: str, model: str, x: np.ndarray) -> Callable:
    """One client of this format: `call() -> class indices` for the tensor x."""
    binary = fmt != "json"
    if fmt == "grpc":
        import tritonclient.grpc as client_lib

        client = client_lib.InferenceServerClient(grpc_address)
    else:
        import tritonclient.http as client_lib

        client = client_lib.InferenceServerClient(url.removeprefix("http://"))
    tensor = client_lib.InferInput("input", list(x.shape), "FP32")
    names = ("class_index", "action")
    if fmt == "grpc":
        tensor.set_data_from_numpy(x)
        outputs = [client_lib.InferRequestedOutput(n) for n in names]
    else:
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = [client_lib.InferRequestedOutput(n, binary_data=binary) for n in names]

    def call() -> np.ndarray:
        return client.infer(model, [tensor], outputs=outputs).as_numpy("class_index")

    return call


def _import_clients(_: int) -> None:
    import tritonclient.grpc
    import tritonclient.http  # noqa: F401


def _worker(job: tuple) -> dict:
    """One client process: connect, warm up, then closed loop until the common stop time."""
    fmt, url, grpc_address, model, x, start_at, stop_at = job
    call = _client_call(fmt, url, grpc_address, model, x)
    call()
    while time.time() < start_at:
        time.sleep(0.001)
    latencies, errors, classes, first_error = [], 0, None, None
    while time.time() < stop_at or not (latencies or errors):  # at least one answer
        t0 = time.perf_counter()
        try:
            answer = call()
        except Exception as err:
            errors += 1
            first_error = first_error or repr(err)[:300]
            continue
        latencies.append(time.perf_counter() - t0)
        classes = classes or [int(c) for c in answer]
    return {"latencies": latencies, "errors": errors, "classes": classes, "error": first_error}


def _closed_loop(pool, fmt: str, target: tuple, concurrency: int, duration: float) -> dict:
    """`concurrency` client processes (one GIL each, as separate load generators are)."""
    url, grpc_address, model, x = target
    start_at = time.time() + 1.0  # every process connected and warm first
    jobs = [(fmt, url, grpc_address, model, x, start_at, start_at + duration)] * concurrency
    parts = pool.map(_worker, jobs)
    latencies = [t for part in parts for t in part["latencies"]]
    return {
        "requests": len(latencies),
        "rps": len(latencies) / duration,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * float(np.percentile(latencies, 99)) if latencies else None,
        "errors": sum(part["errors"] for part in parts),
        "first_error": next((p["error"] for p in parts if p["error"]), None),
        "classes": parts[0]["classes"],
    }


def _summary(fmt: str, batch: int, rounds: list[dict]) -> dict:
    median = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]
    return {
        "format": fmt,
        "batch": batch,
        "requests_per_s": round(median["rps"], 1),
        "samples_per_s": round(median["rps"] * batch, 1),
        "p50_ms": _round(median["p50_ms"]),
        "p99_ms": _round(median["p99_ms"]),
        "errors": sum(r["errors"] for r in rounds),
        "first_error": next((r["first_error"] for r in rounds if r["first_error"]), None),
        "rounds_rps": [round(r["rps"], 1) for r in rounds],
        "classes": median["classes"],
    }


def _ratios(rows: list[dict]) -> dict:
    by = {(r["format"], r["batch"]): r["requests_per_s"] for r in rows}
    batches = sorted({r["batch"] for r in rows})
    return {
        f"{fmt}_over_json": {
            str(b): round(by[fmt, b] / by["json", b], 2) if by["json", b] else None for b in batches
        }
        for fmt in ("binary", "grpc")
    }


# ---- inputs and the server --------------------------------------------------------------------


def _images(directory: Path, preprocessing: dict) -> list[np.ndarray]:
    spec = ImageSpec.from_preprocessing(preprocessing)
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in {".png", ".jpg"})
    if not paths:
        raise SystemExit(f"no PNG/JPEG images in {directory}")
    return [decode_image(p.read_bytes(), spec, 10**8) for p in paths]


def _model(url: str, name: str) -> dict:
    models = {m["name"]: m for m in httpx.get(f"{url}/models", timeout=10).json()["models"]}
    if name not in models:
        raise SystemExit(f"no model {name!r} on {url}: {sorted(models)}")
    return models[name]


@contextlib.contextmanager
def _server(args) -> Iterator[tuple[str, str]]:
    """(HTTP base URL, gRPC host:port) of the running server given, or of a spawned one."""
    if args.url:
        if not args.grpc:
            raise SystemExit("--url needs --grpc HOST:PORT too")
        yield args.url.rstrip("/"), args.grpc
        return
    port, grpc_port = free_port(), free_port()
    env = {
        "OMP_NUM_THREADS": str(args.server_threads),
        "DYNALAY_MODEL_DIR": str(args.model_dir.resolve()),
        "DYNALAY_GRPC_PORT": str(grpc_port),
        "DYNALAY_DEVICE": "cpu",
        "DYNALAY_LOG_LEVEL": "warning",
    }
    with spawned_server(port, env) as url:
        yield url, f"127.0.0.1:{grpc_port}"


def _meta(args, started: float) -> dict:
    return {
        "model": args.model,
        "input": "FP32 `input` [B, 3, 32, 32], CIFAR-10 fixture images",
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "server_threads": args.server_threads,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "note": "clients and server share this machine's CPUs; median of the rounds",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _ms(value: float | None) -> str:
    return f"{value:>8.2f}" if value is not None else f"{'-':>8}"


def _print(report: dict) -> None:
    print(f"\n{'format':>7} {'batch':>5} {'req/s':>8} {'samples/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'err':>4}")  # fmt: skip
    for r in report["results"]:
        print(
            f"{r['format']:>7} {r['batch']:>5} {r['requests_per_s']:>8.1f} "
            f"{r['samples_per_s']:>10.1f} {_ms(r['p50_ms'])} {_ms(r['p99_ms'])} {r['errors']:>4}"
        )
    print("ratios:", json.dumps(report["ratios"]))


if __name__ == "__main__":
    sys.exit(main())
