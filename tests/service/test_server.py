"""`python -m service` as a real uvicorn process classifies a real CIFAR-10 PNG over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.service.helpers import CIFAR_CLASSES, CIFAR_PNGS, write_cnn_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("models")
    write_cnn_checkpoint(repo)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DYNALAY_MODEL_DIR": str(repo),
        "DYNALAY_HOST": "127.0.0.1",
        "DYNALAY_PORT": str(port),
        "DYNALAY_GRPC_PORT": "0",
        "DYNALAY_DEVICE": "cpu",
        "DYNALAY_MAX_QUEUE_DELAY_MS": "20",
        "DYNALAY_LOG_LEVEL": "info",
    }
    env.pop("DYNALAY_API_KEY", None)
    log = (repo / "server.log").open("w+b")  # a file, not a pipe nobody reads (it could fill)
    process = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process, repo / "server.log")
        yield base, process, repo / "server.log"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def wait_until_ready(base: str, process: subprocess.Popen, log: Path, timeout_s=60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


def classify(base: str, path: Path) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes(), "image/png")}
    return httpx.post(f"{base}/predict", files=files, timeout=30)


def test_a_real_server_classifies_a_cifar_png(server):
    base, *_ = server
    r = classify(base, CIFAR_PNGS[0])
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["label"] in CIFAR_CLASSES and answer["model"] == "cifar10"
    assert sum(answer["probabilities"].values()) <= 1.0 + 1e-6
    metrics = httpx.get(f"{base}/metrics").text
    assert 'dynalay_requests_total{model="cifar10",status="200"}' in metrics


def test_a_real_server_batches_concurrent_requests(server):
    base, *_ = server
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda p: classify(base, p), CIFAR_PNGS))
    assert all(r.status_code == 200 for r in answers)
    assert [r.json()["label"] for r in answers] == [
        classify(base, p).json()["label"] for p in CIFAR_PNGS
    ]


def test_sigterm_shuts_down_cleanly(server):
    _, process, log = server
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log.read_text()
