"""Connection-level attacks on a server on loopback, bounded in connections, bytes and time.

The tests run this as its own process (`python -m tests.reliability.attacker KIND ...`), so the
attacker's CPU, memory and sockets are not the test's, and every socket it opened dies with
it however it ends. It prints one JSON object (its figures) on stdout.

- `big-head`: one client sends a request whose one header line (or request line, or a header of
  a second pipelined request, or a trailer of a chunked body) is SIZE bytes, reading while it
  sends, as curl and browsers do; it reports the status it got, how long after the first byte,
  and how much it had sent by then.
- `held-heads`: CLIENTS clients each send SIZE bytes of a header line that never ends, then
  hold the connection; with --again, each one closed by the server comes back at once with
  another, for the whole HOLD_S; reports what each connection was answered and when the
  server closed it.
- `slowloris`: CONNECTIONS connections, spread over SOURCES loopback addresses, each send a
  request line and one header, then one more header line every TRICKLE_S seconds and never the
  blank line that ends the head; reports when the server closed each one.

Sources are loopback addresses other than 127.0.0.1 (127.1.0.1, 127.1.0.2, ...), so a test can
send its own real requests from 127.0.0.1, a different client address, meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import resource
import selectors
import socket
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

CHUNK = b"a" * (256 * 1024)
HEAD_START = b"GET /healthz HTTP/1.1\r\nHost: attack\r\n"
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
CONNECT_TIMEOUT_S = 5.0
# What comes before the SIZE bytes of filler, by where the filler goes.
BIG_PREFIXES = {
    "header": HEAD_START + b"X-Big: ",
    "request-line": b"GET /healthz?q=",
    # a complete small request, then the next one's head (pipelining)
    "pipelined": HEAD_START + b"\r\n" + HEAD_START + b"X-Big: ",
    # a chunked body whose trailer section holds the filler
    "trailer": b"POST /predict HTTP/1.1\r\nHost: attack\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Big: ",
}


def source_address(index: int) -> str:
    """The index-th attacker address: 127.1.0.1, 127.1.0.2, ... (never 127.0.0.1)."""
    return f"127.1.{index // 250}.{index % 250 + 1}"


def raise_file_limit(needed: int) -> int:
    """Raise the soft open-file limit toward the hard one; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


@dataclass
class Conn:
    """One attacking connection and what happened to it."""

    sock: socket.socket
    opened: float
    to_send: int = 0  # bytes of filler still to send
    sent: int = 0
    answer: bytes = b""
    answered_at: float | None = None  # first answer byte (time.monotonic())
    sent_at_answer: int | None = None
    closed_at: float | None = None  # the server closed (EOF or reset)
    last_trickle: float = 0.0

    @property
    def status(self) -> int | None:
        match = STATUS_LINE.match(self.answer)
        return int(match.group(1)) if match else None


def connect(port: int, source: str) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S, source_address=(source, 0)
    )
    sock.setblocking(False)
    return sock


def read_some(conn: Conn, now: float) -> None:
    try:
        data = conn.sock.recv(65536)
    except BlockingIOError:
        return
    except OSError:  # reset by the server
        data = b""
    if data:
        if conn.answered_at is None:
            conn.answered_at, conn.sent_at_answer = now, conn.sent
        conn.answer += data[: max(0, 4096 - len(conn.answer))]  # the head and message suffice
    else:
        conn.closed_at = now


def send_some(conn: Conn, now: float) -> None:
    try:
        sent = conn.sock.send(memoryview(CHUNK)[: min(conn.to_send, len(CHUNK))])
    except BlockingIOError:
        return
    except OSError:  # the server closed under us
        conn.closed_at = conn.closed_at or now
        conn.to_send = 0
        return
    conn.sent += sent
    conn.to_send -= sent


class Swarm:
    """Attacking connections on one selector: each sends its filler, reads what it is
    answered, and notices when the server closes it."""

    def __init__(self, keep_sending_after_answer: bool) -> None:
        self.selector = selectors.DefaultSelector()
        self.keep_sending_after_answer = keep_sending_after_answer
        self.conns: list[Conn] = []
        self.live = 0

    def add(self, conn: Conn) -> None:
        self.conns.append(conn)
        self.live += 1
        self.selector.register(conn.sock, self._events(conn), conn)

    def _events(self, conn: Conn) -> int:
        return selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.to_send else 0)

    def run(self, until: float) -> None:
        """Until every connection is closed or `until` (time.monotonic())."""
        while self.live and (left := until - time.monotonic()) > 0:
            self.step(min(left, 0.05))

    def step(self, timeout_s: float) -> None:
        """Handle what is ready now, waiting at most `timeout_s` for something to be."""
        if self.live:
            for key, events in self.selector.select(timeout=timeout_s):
                conn, now = key.data, time.monotonic()
                if events & selectors.EVENT_READ:
                    read_some(conn, now)
                if events & selectors.EVENT_WRITE and conn.closed_at is None:
                    send_some(conn, now)
                if conn.closed_at is not None:
                    self.selector.unregister(conn.sock)
                    conn.sock.close()
                    self.live -= 1
                    continue
                if conn.answered_at is not None and not self.keep_sending_after_answer:
                    conn.to_send = 0
                if self._events(conn) != key.events:
                    self.selector.modify(conn.sock, self._events(conn), conn)

    def close(self) -> None:
        self.selector.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.sock.close()


@dataclass
class Figures:
    kind: str
    connections: int = 0
    connect_failures: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # "none": closed without an answer
    closed_by_server: int = 0
    closed_without_answer: int = 0
    still_open_at_end: int = 0
    seconds_to_answer: list[float] = field(default_factory=list)
    seconds_to_close: list[float] = field(default_factory=list)  # from each one's connect
    bytes_sent: list[int] = field(default_factory=list)
    bytes_sent_at_answer: list[int] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # a few distinct answer texts
    seconds: float = 0.0


def summarise(kind: str, conns: list[Conn], failures: int, started: float) -> Figures:
    figures = Figures(kind, connections=len(conns), connect_failures=failures)
    figures.statuses = dict(Counter(str(c.status or "none") for c in conns))
    closed = [c for c in conns if c.closed_at is not None]
    figures.closed_by_server = len(closed)
    figures.closed_without_answer = sum(c.status is None for c in closed)
    figures.still_open_at_end = len(conns) - len(closed)
    figures.seconds_to_close = sorted(round(c.closed_at - c.opened, 3) for c in closed)
    answered = [c for c in conns if c.answered_at is not None]
    figures.seconds_to_answer = sorted(round(c.answered_at - c.opened, 3) for c in answered)
    figures.bytes_sent = sorted(c.sent for c in conns)
    figures.bytes_sent_at_answer = sorted(c.sent_at_answer or 0 for c in answered)
    texts = {c.answer.decode("latin-1") for c in answered}
    figures.answers = sorted(texts)[:5]
    figures.seconds = round(time.monotonic() - started, 3)
    return figures


def big_head(port: int, size: int, where: str, limit_s: float) -> Figures:
    started = time.monotonic()
    swarm = Swarm(keep_sending_after_answer=False)
    try:
        sock = connect(port, source_address(0))
        sock.sendall(BIG_PREFIXES[where])
        swarm.add(Conn(sock, time.monotonic(), to_send=size))
        swarm.run(started + limit_s)
    finally:
        swarm.close()
    return summarise("big-head", swarm.conns, 0, started)


def held_heads(port: int, clients: int, size: int, hold_s: float, again: bool) -> Figures:
    started = time.monotonic()
    until = started + hold_s
    # They keep sending whatever they are told: an attacker does not read.
    swarm = Swarm(keep_sending_after_answer=True)

    def start(index: int) -> Conn:
        sock = connect(port, source_address(index))
        sock.send(HEAD_START + b"X-Held: ")
        conn = Conn(sock, time.monotonic(), to_send=size)
        swarm.add(conn)
        return conn

    try:
        active = [start(index) for index in range(clients)]
        while (now := time.monotonic()) < until and (again or swarm.live):
            swarm.run(min(until, now + 0.05))
            for index, conn in enumerate(active):
                if again and conn.closed_at is not None and time.monotonic() < until:
                    active[index] = start(index)  # back with another unfinished header
    finally:
        swarm.close()
    return summarise("held-heads", swarm.conns, 0, started)


def slowloris(port: int, connections: int, sources: int, trickle_s: float, hold_s: float):
    raise_file_limit(connections + 64)
    started = time.monotonic()
    swarm = Swarm(keep_sending_after_answer=False)
    failures = 0
    try:
        for index in range(connections):
            try:
                sock = connect(port, source_address(index % sources))
                sock.send(HEAD_START + b"X-Slow: 0\r\n")
            except OSError:
                failures += 1
                continue
            now = time.monotonic()
            swarm.add(Conn(sock, now, last_trickle=now))
            if index % 50 == 0:
                swarm.step(0)  # notice closes while still connecting
        deadline = started + hold_s
        while swarm.live and (now := time.monotonic()) < deadline:
            swarm.run(min(deadline, now + trickle_s / 4))
            trickle(swarm.conns, trickle_s)
    finally:
        swarm.close()
    return summarise("slowloris", swarm.conns, failures, started)


def trickle(conns: list[Conn], every_s: float) -> None:
    """One more header line on each open connection every `every_s` (never the blank line)."""
    now = time.monotonic()
    for conn in conns:
        if conn.closed_at is None and now - conn.last_trickle >= every_s:
            conn.last_trickle = now
            with contextlib.suppress(OSError):
                conn.sock.send(b"X-Slow: 1\r\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["big-head", "held-heads", "slowloris"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=64 * 2**20, help="bytes of header")
    parser.add_argument("--where", choices=sorted(BIG_PREFIXES), default="header")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--sources", type=int, default=1, help="loopback addresses to use")
    parser.add_argument("--trickle-s", type=float, default=2.0)
    parser.add_argument("--again", action="store_true", help="held-heads: reconnect when closed")
    parser.add_argument("--hold-s", type=float, default=10.0, help="the attack's time limit")
    args = parser.parse_args(argv)
    if args.kind == "big-head":
        figures = big_head(args.port, args.size, args.where, args.hold_s)
    elif args.kind == "held-heads":
        figures = held_heads(args.port, args.clients, args.size, args.hold_s, args.again)
    else:
        figures = slowloris(args.port, args.connections, args.sources, args.trickle_s, args.hold_s)
    json.dump(asdict(figures), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
