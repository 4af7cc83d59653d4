"""What the connection guard costs ordinary traffic: the server as `python -m service` runs it
(guard + h11) against uvicorn's httptools and h11 protocols without a guard, side by side.

For each variant, in interleaved rounds, a fresh server on loopback is measured with:
- keep-alive: CONNECTIONS clients sending `GET /healthz` back to back on kept-alive
  connections (raw sockets, so the client is cheap): answers/s and the server's CPU time per
  answer (from /proc, which a busy machine distorts far less than throughput);
- new connections: one `GET /healthz` per connection, one at a time: answers/s and CPU/answer;
- /predict: the median latency of real PNG predictions over one kept-alive connection.

    python -m benchmarks.connection_guard --model-dir checkpoints --rounds 3 \\
        --out reports/bench_connection_guard.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn

from benchmarks.servers import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("guard+h11", "h11", "httptools")
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"
PNG = ROOT / "tests" / "fixtures" / "cifar10_0_cat.png"


def serve(variant: str) -> None:
    """The server of one variant, configured from DYNALAY_* like `python -m service`."""
    from service.app import DrainingServer, build_config, create_app
    from service.core import Settings

    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper())
    app = create_app(settings)
    config = build_config(app, settings)
    if variant != "guard+h11":  # the same server without the guard, as uvicorn ships it
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level=settings.log_level, http=variant
        )
    DrainingServer(config, app.state.dynalay, settings.drain_delay_s).run()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def keep_alive_answers(port: int, connections: int, seconds: float) -> int:
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(HEALTHZ)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    answers = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in selector.select(0.1):
            count = key.fileobj.recv(65536).count(b"HTTP/1.1 200")
            answers += count
            key.fileobj.sendall(HEALTHZ * count)
    for sock in socks:
        sock.close()
    return answers


def new_connection_answers(port: int, seconds: float) -> int:
    answers = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            answers += answer.startswith(b"HTTP/1.1 200")
    return answers


def per_answer(pid: int, count_answers) -> dict[str, float]:
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    answers = count_answers()
    cpu, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - started
    return {"answers_per_s": answers / wall, "cpu_us_per_answer": cpu / max(answers, 1) * 1e6}


def predict_median_ms(base: str, count: int) -> float:
    files = {"file": (PNG.name, PNG.read_bytes())}
    seconds = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            assert client.post("/predict", files=files).status_code == 200
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def measure(variant: str, model_dir: Path, port: int, seconds: float) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNALAY_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "DYNALAY_MODEL_DIR": str(model_dir),
        "DYNALAY_PORT": str(port),
        "DYNALAY_LOG_LEVEL": "warning",
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "benchmarks.connection_guard", "--serve", variant]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server, timeout_s=180.0)
        pid = server.pid
        return {
            "variant": variant,
            "keep_alive": per_answer(pid, lambda: keep_alive_answers(port, 8, seconds)),
            "new_connections": per_answer(pid, lambda: new_connection_answers(port, seconds)),
            "predict_median_ms": predict_median_ms(base, 50),
        }
    finally:
        server.terminate()
        server.wait(30)


def median(runs: list[dict], part: str, figure: str) -> float:
    return statistics.median(run[part][figure] for run in runs)


def summary(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Each variant's medians over the rounds."""
    medians = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        medians[variant] = {
            "keep_alive_cpu_us": median(mine, "keep_alive", "cpu_us_per_answer"),
            "new_connection_cpu_us": median(mine, "new_connections", "cpu_us_per_answer"),
            "predict_median_ms": statistics.median(r["predict_median_ms"] for r in mine),
        }
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    runs = []
    for round_index in range(args.rounds):
        for variant in VARIANTS:
            runs.append(measure(variant, args.model_dir.resolve(), free_port(), args.seconds))
            print(round_index, json.dumps(runs[-1]), flush=True)
    result = {"machine": f"{os.cpu_count()} CPUs", "runs": runs, "medians": summary(runs)}
    print(json.dumps(result["medians"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
