"""`python -m benchmarks.peers`: see the package docstring (benchmarks/peers/__init__.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import numpy as np

from benchmarks.engines import host
from benchmarks.peers import __doc__ as PACKAGE_DOC
from benchmarks.peers import wrk
from benchmarks.peers.client import multipart_bodies, run_load
from benchmarks.servers import ROOT, free_port, spawned_server
from scripts.served_accuracy import test_images

CONNECTIONS = ("new", "keep-alive")
SERVERS = ("litserve", "ours fp32", "ours default")
MEASURES = ("answers_per_s", "p50_ms", "p99_ms")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.peers", description=PACKAGE_DOC.split("\n")[0]
    )
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/cifar10"))
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--images", type=int, default=600, help="test PNGs the clients cycle through")
    p.add_argument("--accuracy-n", type=int, default=600, help="test PNGs scored per server")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0, help="per server, load and round")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="the load generator: wrk (auto: when installed) or the Python closed loop",
    )
    p.add_argument("--json", type=Path, default=Path("reports/bench_peers.json"))
    return p.parse_args(argv)


# ---- the servers ------------------------------------------------------------------------------


@contextlib.contextmanager
def litserve(checkpoint: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "benchmarks.peers.litserve_app", str(checkpoint.resolve())]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [*cmd, "--port", str(port)], env=env, stdout=log, stderr=log, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(url + "/health", server, log)
            yield url
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # LitServe's inference workers too
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
            _wait_until_gone(server.pid)


def _wait_until_gone(group: int, timeout_s: float = 15.0) -> None:
    """Until no process of `group` is left: a worker still running (LitServe's outlive its
    server for seconds) would take the cores from the next server measured."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        if time.monotonic() >= deadline:
            os.killpg(group, signal.SIGKILL)
        time.sleep(0.1)


@contextlib.contextmanager
def ours(checkpoint: Path, numerics: dict[str, str]) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as repository:
        (Path(repository) / checkpoint.name).symlink_to(checkpoint.resolve())
        env = {"DYNALAY_MODEL_DIR": repository, "DYNALAY_GRPC_PORT": str(free_port())}
        with spawned_server(free_port(), {**env, **numerics}) as url:
            yield url


def server_for(name: str, checkpoint: Path) -> Callable[[], AbstractContextManager[str]]:
    numerics = {
        "ours fp32": {"DYNALAY_PRECISION": "fp32", "DYNALAY_LAYOUT": "nchw"},
        # Still fp32 arithmetic, in channels_last memory (what our engine does at fp32 when the
        # layout is left to choose): the layout, not the numerics, differs from the peer's.
        "ours fp32 nhwc": {"DYNALAY_PRECISION": "fp32", "DYNALAY_LAYOUT": "nhwc"},
        "ours default": {"DYNALAY_PRECISION": "auto", "DYNALAY_LAYOUT": "auto"},
        # The other option for HTTP and compute: the engine on a thread of the service's process.
        "ours default thread": {
            "DYNALAY_PRECISION": "auto",
            "DYNALAY_LAYOUT": "auto",
            "DYNALAY_ENGINE_PROCESS": "false",
        },
    }
    if name == "litserve":
        return lambda: litserve(checkpoint)
    return lambda: ours(checkpoint, numerics[name])


def _wait_for(url: str, server: subprocess.Popen, log, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the peer exited with {server.returncode}:\n{log.read()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} was not ready after {timeout_s} s")


# ---- one server's round -----------------------------------------------------------------------


def measure_round(
    url: str,
    bodies: list[tuple[bytes, str]],
    concurrencies: list[int],
    seconds: float,
    client: str,
) -> list[dict]:
    rows = []
    for concurrency in concurrencies:
        for connection in CONNECTIONS:
            keep_alive = connection == "keep-alive"
            if client == "wrk":
                result = wrk.run_wrk(url, bodies, concurrency, seconds, keep_alive)
            else:
                result = asyncio.run(run_load(url, bodies, concurrency, seconds, keep_alive))
            rows.append({"concurrency": concurrency, "connection": connection, **result})
    return rows


def choose_client(asked: str) -> str:
    if asked == "auto":
        return "wrk" if wrk.available() else "python"
    if asked == "wrk" and not wrk.available():
        raise SystemExit("--client wrk: wrk is not installed (apt-get install wrk)")
    return asked


def answers(url: str, bodies: list[tuple[bytes, str]]) -> list[int]:
    """The class index the server answers for each body (8 clients, each body once)."""
    return asyncio.run(run_load(url, bodies, 8, 0, keep_alive=True, once=True))["answers"]


# ---- the whole run ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.servers.split(",")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    images = test_images(args.data_dir, max(args.images, args.accuracy_n))
    bodies = multipart_bodies([png for png, _ in images])
    labels = [label for _, label in images]
    client = choose_client(args.client)
    report: dict = {
        "checkpoint": str(args.checkpoint),
        "inputs": f"CIFAR-10 test images 0..{len(images) - 1} as PNG, multipart `file`",
        "seconds_per_load": args.seconds,
        "client": client,
        "host": host("cpu"),
        "rounds": [],
        "accuracy": {},
        "answers": {},  # class indices per server, first --accuracy-n images
    }
    print(f"cpu flags: {' '.join(report['host']['cpu_flags'])}; load from {client}")
    for round_index in range(args.rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:  # rotated every round: no server always runs first or last
            with server_for(name, args.checkpoint)() as url:
                if name not in report["answers"]:
                    n = args.accuracy_n
                    got = report["answers"][name] = answers(url, bodies[:n])
                    score = report["accuracy"][name] = _accuracy(got, labels[:n])
                    print(f"{name}: accuracy {score:.4f} on {n} test PNGs")
                rows = measure_round(
                    url, bodies[: args.images], concurrencies, args.seconds, client
                )
            for row in rows:
                report["rounds"].append({"round": round_index, "server": name, **row})
                print(
                    f"round {round_index} {name:19} c={row['concurrency']:<3} "
                    f"{row['connection']:10} {row['answers_per_s']:8.1f}/s "
                    f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms"
                )
    report["medians"], report["ratios"] = summarise(report["rounds"], names)
    print_summary(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


def _accuracy(answers: list[int], labels: list[int]) -> float:
    return float(np.mean([a == y for a, y in zip(answers, labels, strict=True)]))


def summarise(rounds: list[dict], names: list[str]) -> tuple[list[dict], list[dict]]:
    """Medians over rounds per (server, load); ours / LitServe answers/s per load and round."""
    loads = sorted({(r["concurrency"], r["connection"]) for r in rounds})
    medians, ratios = [], []
    for concurrency, connection in loads:
        load = (concurrency, connection)
        same = [r for r in rounds if (r["concurrency"], r["connection"]) == load]
        for name in names:
            mine = [r for r in same if r["server"] == name]
            medians.append({
                "server": name, "concurrency": concurrency, "connection": connection,
                **{k: float(np.median([r[k] for r in mine])) for k in MEASURES},
            })  # fmt: skip
        peer = {
            r["round"]: r["answers_per_s"]
            for r in same
            if r["server"] == "litserve" and r["answers_per_s"] > 0
        }
        for name in (n for n in names if n != "litserve" and peer):
            per_round = [
                r["answers_per_s"] / peer[r["round"]]
                for r in same
                if r["server"] == name and r["round"] in peer
            ]
            ratios.append({
                "server": name, "concurrency": concurrency, "connection": connection,
                "vs_litserve_median": float(np.median(per_round)),
                "vs_litserve_rounds": [round(x, 3) for x in per_round],
            })  # fmt: skip
    return medians, ratios


def print_summary(report: dict) -> None:
    print("\nmedians over rounds (answers/s, p50 ms, p99 ms) and ours / LitServe (answers/s)")
    ratio = {(r["server"], r["concurrency"], r["connection"]): r for r in report["ratios"]}
    for m in report["medians"]:
        key = (m["server"], m["concurrency"], m["connection"])
        vs = f"{ratio[key]['vs_litserve_median']:.2f}x" if key in ratio else "-"
        print(
            f"{m['server']:19} c={m['concurrency']:<3} {m['connection']:10} "
            f"{m['answers_per_s']:8.1f} {m['p50_ms']:8.1f} {m['p99_ms']:8.1f}  {vs}"
        )


if __name__ == "__main__":
    sys.exit(main())
