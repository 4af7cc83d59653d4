"""Connection-level attacks on a real `python -m service`, with real predictions meanwhile.

The attacks come from `tests/reliability/attacker.py`, run as a separate process from
loopback addresses 127.1.x.y; the real client is this process, from 127.0.0.1, posting a real
PNG on a fresh connection every PROBE_EVERY_S and checking each answer against the model's own
output. While an attack runs, the server's RSS is sampled every 10 ms.

Sizes: CI-sized by default; `DYNALAY_ATTACK_SCALE=full` (what `make reliability` sets) gives
the full sizes the guarantees in docs/reliability.md are stated for: a 64 MiB header, 50
clients × 48 MiB of unfinished header, 5,000 slowloris connections against the default head
deadline, served from the embedded checkpoints `make serve` serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.reliability import figures
from tests.reliability.live import ROOT, LiveServer, running
from tests.reliability.models import Direct, direct_answers, write_cnn
from tests.service.helpers import CIFAR_PNGS

FULL = os.environ.get("DYNALAY_ATTACK_SCALE", "ci") == "full"
MiB = 2**20
BIG_HEAD = 64 * MiB if FULL else 8 * MiB
HELD_CLIENTS, HELD_BYTES, HELD_S = (50, 48 * MiB, 8.0) if FULL else (10, 4 * MiB, 3.0)
SLOWLORIS = 5000 if FULL else 400
SLOWLORIS_SOURCES = 10 if FULL else 4  # 500 / 100 per address: under the per-client cap
HEAD_TIMEOUT_S = 10.0 if FULL else 2.0  # FULL: the default (Settings.head_timeout_s)
PROBE_EVERY_S = 0.2
PROBE_LIMIT_S = 1.0  # a real prediction is answered within this during every attack
CLOSE_SLACK_S = 3.0  # accept delay under a connection flood, and the client noticing EOF


@dataclass
class Watch:
    """RSS samples and real predictions taken while an attack runs."""

    rss: list[int] = field(default_factory=list)
    probes: list[tuple[float, int | str, bool]] = field(default_factory=list)  # s, status, right

    def growth_mib(self) -> float:
        return (max(self.rss) - self.rss[0]) / MiB

    def slowest_s(self) -> float:
        return max(seconds for seconds, _, _ in self.probes)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Direct]]:
    """FULL: the embedded checkpoints (what `make serve` serves); CI: one tiny CNN."""
    if FULL:
        repo = ROOT / "checkpoints"
        return repo, direct_answers(repo / "cifar10", CIFAR_PNGS, None)
    repo = tmp_path_factory.mktemp("guard-repo")
    return repo, direct_answers(write_cnn(repo), CIFAR_PNGS, None)


@pytest.fixture(scope="module")
def server(served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    repo, _ = served
    log = tmp_path_factory.mktemp("guard") / "server.log"
    settings: dict[str, object] = {"log_level": "warning"}
    if not FULL:
        settings["head_timeout_s"] = HEAD_TIMEOUT_S
    with running(repo, log, **settings) as live:
        yield live


def attack(server: LiveServer, served, kind: str, limit_s: float, *args: str) -> tuple[dict, Watch]:
    """Run one attack to its end while sampling RSS and probing; returns (figures, watch)."""
    _, expected = served
    watch = Watch(rss=[server.rss_bytes()])
    stop = threading.Event()
    threads = [
        threading.Thread(target=sample_rss, args=(server, watch, stop)),
        threading.Thread(target=probe, args=(server, expected, watch, stop)),
    ]
    for thread in threads:
        thread.start()
    try:
        command = [sys.executable, "-m", "tests.reliability.attacker", kind]
        command += ["--port", str(server.port), "--hold-s", str(limit_s), *args]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=limit_s + 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert server.process.poll() is None, server.log()[-3000:]
    return json.loads(done.stdout), watch


def sample_rss(server: LiveServer, watch: Watch, stop: threading.Event) -> None:
    while not stop.wait(0.01):
        watch.rss.append(server.rss_bytes())


def probe(server: LiveServer, expected: list[Direct], watch: Watch, stop: threading.Event):
    """A real /predict on a fresh connection from 127.0.0.1 every PROBE_EVERY_S."""
    index = 0
    while not stop.wait(PROBE_EVERY_S):
        path = CIFAR_PNGS[index % len(CIFAR_PNGS)]
        transport = httpx.HTTPTransport(local_address="127.0.0.1")
        started = time.monotonic()
        try:
            with httpx.Client(transport=transport, timeout=30) as client:
                files = {"file": (path.name, path.read_bytes())}
                answer = client.post(f"{server.base}/predict", files=files)
            right = answer.json().get("label") == expected[index % len(CIFAR_PNGS)].label
            watch.probes.append((time.monotonic() - started, answer.status_code, right))
        except httpx.TransportError as exc:
            watch.probes.append((time.monotonic() - started, type(exc).__name__, False))
        index += 1


def assert_predictions_served(watch: Watch) -> None:
    """Every real prediction during the attack: 200, the model's own label, within 1 s."""
    assert watch.probes, "no prediction was tried during the attack"
    assert {(status, right) for _, status, right in watch.probes} == {(200, True)}, watch.probes
    assert watch.slowest_s() < PROBE_LIMIT_S, watch.probes


def open_sockets(server: LiveServer) -> int:
    count = 0
    for fd in Path(f"/proc/{server.process.pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we look
            count += os.readlink(fd).startswith("socket:")
    return count


@pytest.mark.parametrize(
    ("where", "status"), [("header", 431), ("request-line", 414)], ids=["header", "request-line"]
)
def test_a_huge_header_is_refused_at_once_with_little_memory(server, served, where, status):
    args = ["--size", str(BIG_HEAD), "--where", where]
    result, watch = attack(server, served, "big-head", 20.0, *args)
    assert result["statuses"] == {str(status): 1}
    answered_after = result["seconds_to_answer"][0]
    assert answered_after < 1.0
    assert watch.growth_mib() < 20
    figures.record(
        f"connections: {BIG_HEAD // MiB} MiB {where}",
        f"{status} after {answered_after * 1000:.0f} ms, client had sent "
        f"{result['bytes_sent_at_answer'][0] / MiB:.1f} MiB, RSS +{watch.growth_mib():.1f} MiB",
    )


def test_clients_sending_unfinished_huge_headers_cost_no_memory(server, served):
    args = ["--clients", str(HELD_CLIENTS), "--size", str(HELD_BYTES), "--again"]
    sockets_before = open_sockets(server)
    result, watch = attack(server, served, "held-heads", HELD_S, *args)
    # Every answer is a 431. "none": still sending when the attack's time ran out, or reset
    # before it read its 431 (it kept sending past the server's LINGER_MAX_BYTES).
    assert set(result["statuses"]) <= {"431", "none"}, result["statuses"]
    assert result["statuses"]["431"] > HELD_CLIENTS
    assert watch.growth_mib() < 100
    assert_predictions_served(watch)
    assert_no_sockets_left(server, sockets_before)
    figures.record(
        f"connections: {HELD_CLIENTS} clients × {HELD_BYTES // MiB} MiB unfinished headers",
        f"{result['connections']} heads over {HELD_S:g} s: {result['statuses']}, "
        f"RSS +{watch.growth_mib():.1f} MiB, slowest of {len(watch.probes)} predictions "
        f"{watch.slowest_s() * 1000:.0f} ms",
    )


def test_slowloris_connections_are_closed_at_the_head_deadline(server, served):
    sockets_before = open_sockets(server)
    args = ["--connections", str(SLOWLORIS), "--sources", str(SLOWLORIS_SOURCES)]
    result, watch = attack(server, served, "slowloris", HEAD_TIMEOUT_S + 30, *args)
    assert result["connect_failures"] == 0 and result["still_open_at_end"] == 0
    assert set(result["statuses"]) <= {"408", "503"}, result["statuses"]  # 503: evicted
    slowest_close = result["seconds_to_close"][-1]
    assert slowest_close <= HEAD_TIMEOUT_S + CLOSE_SLACK_S
    assert_predictions_served(watch)
    assert_no_sockets_left(server, sockets_before)
    figures.record(
        f"connections: {SLOWLORIS} slowloris, head deadline {HEAD_TIMEOUT_S:g} s",
        f"all closed by the server within {slowest_close:.1f} s ({result['statuses']}), "
        f"RSS +{watch.growth_mib():.1f} MiB, slowest of {len(watch.probes)} predictions "
        f"{watch.slowest_s() * 1000:.0f} ms",
    )


def assert_no_sockets_left(server: LiveServer, before: int) -> None:
    """The attacker has exited: within the linger time the server holds what it held."""
    deadline = time.monotonic() + 10
    while open_sockets(server) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_sockets(server) <= before
