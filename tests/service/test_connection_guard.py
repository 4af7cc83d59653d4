"""The connection guard in front of a real uvicorn (h11) server, over raw loopback sockets.

A small app (not the model service: the guard does not care what it protects) runs in a real
uvicorn server in a thread, with `uvicorn_options(limits)` as `python -m service` uses them and
limits small enough to test each boundary in well under a second.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from service.connection_guard import LINGER_S, ConnectionLimits, uvicorn_options

LIMITS = ConnectionLimits(
    max_request_line_bytes=200,
    max_header_line_bytes=300,
    max_head_bytes=2000,
    max_headers=10,
    head_timeout_s=0.6,
    keep_alive_timeout_s=0.4,
    max_connections=50,
    max_connections_per_client=20,
)
GATE = threading.Event()  # /hold answers once it is set


async def ok(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


async def hold(_: Request) -> PlainTextResponse:
    await anyio.to_thread.run_sync(GATE.wait, 10)
    return PlainTextResponse("held")


APP = Starlette(
    routes=[Route("/ok", ok), Route("/echo", echo, methods=["POST"]), Route("/hold", hold)]
)


@contextlib.contextmanager
def guarded(limits: ConnectionLimits = LIMITS) -> Iterator[int]:
    """A guarded uvicorn serving APP on a free loopback port; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(APP, log_level="warning", lifespan="off", **uvicorn_options(limits))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started
        yield listener.getsockname()[1]
    finally:
        GATE.set()
        server.should_exit = True
        thread.join(10)
        listener.close()
        GATE.clear()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with guarded() as p:
        yield p


class Client:
    """A raw HTTP/1.1 client socket that keeps what it read past one answer."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=(source, 0)
        )
        self.buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def _more(self) -> bytes:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return chunk

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, lower-case headers, body (by Content-Length)."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._more(), f"closed before an answer: {self.buffer!r}"
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(re.match(r"HTTP/1\.1 (\d{3}) ", lines[0]).group(1))
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            assert self._more(), "closed inside a body"
            rest = self.buffer.partition(b"\r\n\r\n")[2]
        self.buffer = rest[length:]
        return status, headers, rest[:length]

    def closed_by_server(self, within_s: float) -> bytes:
        """What the server still sends until it closes; fails if it does not within_s."""
        self.sock.settimeout(within_s)
        with contextlib.suppress(ConnectionResetError):
            while self._more():
                pass
        rest, self.buffer = self.buffer, b""
        return rest


def error_of(body: bytes) -> str:
    return json.loads(body)["error"]


GET = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n"


def test_requests_pass_and_the_connection_is_kept_alive(port):
    with Client(port) as sock:
        for _ in range(3):
            sock.send(GET)
            assert sock.answer()[::2] == (200, b"ok")


@pytest.mark.parametrize(
    ("head", "status", "setting"),
    [
        (b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "REQUEST_LINE_BYTES"),
        (b"GET /ok HTTP/1.1\r\nHost: t\r\nX: " + b"b" * 300 + b"\r\n\r\n", 431, "HEADER_LINE_"),
        (b"GET /ok HTTP/1.1\r\n" + b"A: b\r\n" * 11 + b"\r\n", 431, "HEADERS)"),
        (b"GET /ok HTTP/1.1\r\n" + (b"X: " + b"c" * 250 + b"\r\n") * 8 + b"\r\n", 431, "HEAD_"),
    ],
    ids=["request-line", "header-line", "header-count", "whole-head"],
)
def test_a_head_past_a_limit_gets_a_clear_4xx_and_closes(port, head, status, setting):
    with Client(port) as sock:
        sock.send(head)
        got, headers, body = sock.answer()
        assert got == status and f"DYNALAY_MAX_{setting}" in error_of(body)
        assert headers["connection"] == "close"
        assert sock.closed_by_server(within_s=3) == b""


def test_heads_at_the_limits_are_served(port):
    target = b"/ok?" + b"q" * (200 - len(b"GET /ok? HTTP/1.1"))
    headers = b"".join(b"H%d: " % i + b"v" * 190 + b"\r\n" for i in range(9))  # 9 × 195 bytes
    head = b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n"
    assert len(head) < LIMITS.max_head_bytes
    with Client(port) as sock:
        sock.send(head)
        assert sock.answer()[::2] == (200, b"ok")


def test_a_never_ending_header_is_refused_after_the_limit_and_read_away(port):
    # The client sends up to 32 MiB of one header while reading, as curl does: the answer comes
    # right after the limit (what the client sent by then is mostly in kernel buffers), and
    # what it already sent is drained, so it reads a 431, not a reset.
    with Client(port) as sock:
        sock.send(b"GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sock.sock.setblocking(False)
        sent, answer = 0, b""
        deadline = time.monotonic() + 5
        while not answer and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                answer = sock.sock.recv(65536)
            if not answer and sent < 32 * 2**20:
                with contextlib.suppress(BlockingIOError):
                    sent += sock.sock.send(b"a" * 65536)
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert sent < 32 * 2**20  # refused before the client was done


def test_a_slow_but_timely_head_is_served():
    with guarded(ConnectionLimits(head_timeout_s=5)) as port, Client(port) as sock:
        for byte in GET:
            sock.send(bytes([byte]))
            time.sleep(1.0 / len(GET))  # a second for 30 bytes
        assert sock.answer()[::2] == (200, b"ok")


def test_an_unfinished_head_gets_408_at_the_deadline_even_when_it_trickles(port):
    with Client(port) as sock:
        started = time.monotonic()
        sock.send(b"GET /ok HTTP/1.1\r\n")
        for _ in range(3):
            time.sleep(0.1)
            sock.send(b"X-Slow: 1\r\n")  # each line resets nothing
        status, _, body = sock.answer()
        waited = time.monotonic() - started
    assert status == 408 and "DYNALAY_HEAD_TIMEOUT_S" in error_of(body)
    assert LIMITS.head_timeout_s - 0.05 <= waited < LIMITS.head_timeout_s + 0.5


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(port):
    with Client(port) as sock:
        started = time.monotonic()
        assert sock.closed_by_server(within_s=3) == b""
        assert time.monotonic() - started < LIMITS.head_timeout_s + 0.5


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(port):
    with Client(port) as sock:
        sock.send(GET)
        assert sock.answer()[0] == 200
        started = time.monotonic()
        assert sock.closed_by_server(within_s=3) == b""
        waited = time.monotonic() - started
    assert LIMITS.keep_alive_timeout_s - 0.05 <= waited < LIMITS.keep_alive_timeout_s + 0.5


def test_the_head_deadline_of_a_later_request_starts_at_its_first_byte():
    limits = ConnectionLimits(keep_alive_timeout_s=1.0, head_timeout_s=1.5)
    with guarded(limits) as port, Client(port) as sock:
        sock.send(GET)
        assert sock.answer()[0] == 200
        time.sleep(0.5)  # idle, below the keep-alive timeout
        first_byte = time.monotonic()
        sock.send(b"GET /ok HTTP/1.1\r\n")
        status, _, _ = sock.answer()
        waited = time.monotonic() - first_byte
    assert status == 408  # not a silent keep-alive close
    # Counted from the response's end, the deadline would have come 0.5 s earlier.
    assert limits.head_timeout_s - 0.05 <= waited < limits.head_timeout_s + 0.5


def test_pipelined_requests_are_answered_in_order(port):
    with Client(port) as sock:
        sock.send(GET * 3)
        data = closed_or_answers(sock, count=3)
    assert data.count(b"HTTP/1.1 200 OK") == 3


def closed_or_answers(client: Client, count: int) -> bytes:
    while client.buffer.count(b"\r\n\r\nok") < count and client._more():
        pass
    return client.buffer


def test_a_pipelined_head_past_a_limit_is_refused_after_the_answer_before_it(port):
    big = b"GET /ok HTTP/1.1\r\nHost: t\r\nX: " + b"b" * 400 + b"\r\n\r\n"
    with Client(port) as sock:
        sock.send(GET + big)
        assert sock.answer()[0] == 200
        rest = sock.closed_by_server(within_s=3)
    assert rest.startswith(b"HTTP/1.1 431 ") and b"DYNALAY_MAX_HEADER_LINE_BYTES" in rest


def test_bodies_reach_the_app_with_a_length_and_chunked(port):
    body = b"x" * 100_000
    with Client(port) as sock:
        sock.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + body)
        assert sock.answer()[::2] == (200, b'{"bytes":100000}')
        chunks = b"".join(b"%x\r\n" % 10_000 + body[:10_000] + b"\r\n" for _ in range(10))
        sock.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.send(chunks + b"0\r\n\r\n")
        assert sock.answer()[::2] == (200, b'{"bytes":100000}')
        sock.send(GET)  # and the connection goes on
        assert sock.answer()[0] == 200


def test_an_answer_given_before_the_body_was_read_ends_the_connection(port):
    # POST to a GET route: 405 without reading the body. Kept alive, the client could trickle
    # the rest of its declared million bytes forever; instead the connection ends.
    with Client(port) as sock:
        sock.send(b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n0123456789")
        assert sock.answer()[0] == 405
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for _ in range(40):
                sock.send(b"x")
                time.sleep(0.1)
        assert sock.closed_by_server(within_s=3) == b""
        assert time.monotonic() - started < LINGER_S + 0.5


def test_an_oversized_trailer_gets_a_400_that_says_so(port):
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    with Client(port) as sock:
        sock.send(head + b"2\r\n{}\r\n0\r\nX-Trailer: " + b"t" * 5000)
        answer = sock.closed_by_server(within_s=3)  # uvicorn's 400, chunked
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"trailer section is larger than 2000 bytes" in answer


def test_a_malformed_head_within_the_limits_gets_a_400(port):
    with Client(port) as sock:
        sock.send(b"GET /ok HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n")
        answer = sock.closed_by_server(within_s=3)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"malformed request line, header" in answer


def test_a_client_address_past_its_cap_gets_503_and_others_are_served():
    limits = ConnectionLimits(max_connections_per_client=2, head_timeout_s=5)
    with guarded(limits) as port:
        held = [Client(port, "127.0.0.2") for _ in range(2)]
        time.sleep(0.1)  # accepted
        with Client(port, "127.0.0.2") as third:
            status, headers, body = third.answer()
            assert status == 503 and headers["retry-after"] == "1"
            assert "DYNALAY_MAX_CONNECTIONS_PER_CLIENT" in error_of(body)
        with Client(port, "127.0.0.3") as other:
            other.send(GET)
            assert other.answer()[0] == 200
        for sock in held:
            sock.send(GET)
            assert sock.answer()[0] == 200
            sock.close()


def test_a_full_server_closes_the_longest_waiting_connection_for_a_newcomer():
    limits = ConnectionLimits(max_connections=2, max_connections_per_client=0, head_timeout_s=5)
    with guarded(limits) as port:
        silent = Client(port)
        time.sleep(0.1)
        slow = Client(port)
        slow.send(b"GET /ok HTTP/1.1\r\n")
        time.sleep(0.1)
        newcomer = Client(port)
        newcomer.send(GET)
        assert newcomer.answer()[0] == 200  # and it stays, idle: it waits from now on
        assert silent.closed_by_server(within_s=2) == b""  # nothing asked: no answer
        with Client(port) as another:
            status, _, body = slow.answer()
            assert status == 503 and "the longest waiting for its request head" in error_of(body)
            another.send(GET)
            assert another.answer()[0] == 200
        newcomer.send(GET)  # the newest waiter was kept
        assert newcomer.answer()[0] == 200
        for client in (silent, slow, newcomer):
            client.close()


def test_a_full_server_whose_slots_all_carry_requests_answers_503():
    limits = ConnectionLimits(max_connections=2, max_connections_per_client=0, head_timeout_s=5)
    with guarded(limits) as port:
        busy = [Client(port) for _ in range(2)]
        for sock in busy:
            sock.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.2)
        with Client(port) as refused:
            status, _, body = refused.answer()
        assert status == 503 and "each with a request in progress" in error_of(body)
        GATE.set()
        for sock in busy:
            assert sock.answer()[::2] == (200, b"held")
            sock.close()


def test_shutdown_closes_connections_that_wait_for_a_head():
    limits = ConnectionLimits(head_timeout_s=30, keep_alive_timeout_s=30)
    with guarded(limits) as port:
        silent, slow, idle = Client(port), Client(port), Client(port)
        slow.send(b"GET /ok HTTP/1.1\r\n")
        idle.send(GET)
        assert idle.answer()[0] == 200
        time.sleep(0.1)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5  # uvicorn did not wait for them
    for client in (silent, slow, idle):
        assert client.closed_by_server(within_s=1) == b""
        client.close()
