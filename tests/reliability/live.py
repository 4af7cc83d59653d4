"""A real `python -m service` process on a free loopback port, for wire-level checks.

The process logs to a file (a pipe nobody reads could fill and block it). Every wait has a time
limit, and the context manager always ends the process, by SIGKILL if it must.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0  # torch import + load + warm-up on a busy 2-core machine


@dataclass
class LiveServer:
    process: subprocess.Popen
    base: str  # http://127.0.0.1:<port>
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def rss_bytes(self) -> int:
        """Resident set size of the server process, from /proc (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait for the exit status (SIGKILL after `timeout_s`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"no exit {timeout_s} s after SIGTERM:\n{self.log()[-3000:]}"
            ) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(model_dir: Path, port: int, **settings: object) -> dict[str, str]:
    """The environment of a server process: only our DYNALAY_* values, one torch thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNALAY_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",  # the load generator needs the other core
        "DYNALAY_MODEL_DIR": str(model_dir),
        "DYNALAY_HOST": "127.0.0.1",
        "DYNALAY_PORT": str(port),
        "DYNALAY_DEVICE": "cpu",
        "DYNALAY_GRPC_PORT": "0",  # a test that wants gRPC passes grpc_port=...
    }
    env |= {f"DYNALAY_{name.upper()}": str(value) for name, value in settings.items()}
    return env


def spawn(model_dir: Path, log_path: Path, **settings: object) -> LiveServer:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=server_env(model_dir, port, **settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return LiveServer(process, f"http://127.0.0.1:{port}", port, log_path)


def wait_ready(server: LiveServer, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited {server.process.returncode}:\n{server.log()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.base}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"not ready after {timeout_s} s:\n{server.log()[-3000:]}")


@contextlib.contextmanager
def running(model_dir: Path, log_path: Path, **settings: object) -> Iterator[LiveServer]:
    """A ready server; stopped (SIGTERM, then SIGKILL) on the way out whatever happened."""
    server = spawn(model_dir, log_path, **settings)
    try:
        wait_ready(server)
        yield server
    finally:
        if server.process.poll() is None:
            with contextlib.suppress(AssertionError):
                server.terminate(timeout_s=30)
