"""A `python -m service` of this checkout, spawned on loopback for a benchmark to load."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]  # so the spawned `python -m service` finds us


@contextlib.contextmanager
def spawned_server(port: int, env: dict[str, str]) -> Iterator[str]:
    """The server on 127.0.0.1:`port`, configured by `env` (DYNALAY_* and the like) on top of
    this process's environment; yields its base URL once /readyz answers 200, and stops it
    with SIGTERM afterwards (SIGKILL if it has not exited 30 s later)."""
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DYNALAY_HOST": "127.0.0.1",
        "DYNALAY_PORT": str(port),
        **env,
    }
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "service"], env=full_env, stdout=log, stderr=log
        )
        try:
            wait_ready(url, server, log)
            yield url
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def wait_ready(url: str, server: subprocess.Popen, log=None, timeout_s: float = 300) -> None:
    """Poll /readyz until 200; exit with the server's log (a binary file, if it has one) when
    it dies or fails to load."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = ""
            if log is not None:
                log.seek(0)
                tail = log.read().decode()[-3000:]
            raise SystemExit(f"the server exited with {server.returncode}:\n{tail}")
        with contextlib.suppress(httpx.TransportError):
            ready = httpx.get(f"{url}/readyz", timeout=2)
            if ready.status_code == 200:
                return
            if ready.json().get("error", "").startswith("model loading failed"):
                raise SystemExit(ready.json()["error"])
        time.sleep(0.2)
    raise SystemExit(f"the server at {url} was not ready after {timeout_s} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
