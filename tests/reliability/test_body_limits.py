"""Body limits and the request deadline, on the wire against a real server (raw sockets).

- A chunked upload (no Content-Length) past DYNALAY_MAX_BODY_BYTES is refused with 413 as soon
  as the limit is crossed: the app stops reading (its message says how far it read); the
  server then discards what the client still sends for a bounded time and size (lingering
  close) before closing, so the client reads the 413 instead of a connection reset, and a
  stream past that bound is cut off.
- A declared Content-Length past the limit gets 413 before any body byte is sent, and a client
  that writes its whole body before reading (urllib) reads that 413.
- A body that trickles in slower than the deadline gets 408, and the connection is closed.
"""

from __future__ import annotations

import re
import select
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import httpx
import pytest

from service.app import LINGER_MIN_BYTES
from tests.reliability.live import LiveServer, running
from tests.reliability.models import write_cnn
from tests.service.helpers import CIFAR_PNGS

LIMIT = 64 * 1024
TIMEOUT_MS = 1500
# What the app may be handed past the limit in its last receive(): uvicorn buffers body bytes
# until more than 64 KiB wait (then pauses the socket), and one transport read adds up to
# asyncio's 256 KiB. Measured under CI load: 156,642 bytes, over the 128 KiB first assumed.
READ_SLACK = 64 * 1024 + 256 * 1024
HEAD = "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("limits")
    write_cnn(root / "repo")
    settings = dict(max_body_bytes=LIMIT, request_timeout_ms=TIMEOUT_MS, log_level="warning")
    with running(root / "repo", root / "server.log", **settings) as live:
        yield live


def connect(server: LiveServer, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(head.encode() + b"\r\n")
    return sock


def stream_until_answered(sock: socket.socket, total: int, limit_s: float = 10.0):
    """Send chunks of body while reading whatever comes back; stop at the answer's end
    (EOF/reset), after `total` bytes, or after `limit_s`. Returns (bytes sent, answer)."""
    sock.setblocking(False)
    chunk = b"%x\r\n" % 16384 + b"x" * 16384 + b"\r\n"
    sent, answer = 0, b""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        writable = [sock] if sent < total else []
        readable, writable, _ = select.select([sock], writable, [], 0.5)
        try:
            if readable:
                data = sock.recv(65536)
                if not data:
                    break  # closed by the server
                answer += data
            elif writable:
                sent += sock.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break  # closed by the server while we were still sending
    sock.close()
    return sent, answer.decode("latin-1")


def status_of(answer: str) -> int:
    match = re.match(r"HTTP/1\.1 (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1))


def test_a_chunked_upload_past_the_limit_gets_its_413(server):
    total = 16 * 2**20
    sock = connect(server, HEAD + "Transfer-Encoding: chunked\r\n")
    sent, answer = stream_until_answered(sock, total)
    assert status_of(answer) == 413
    read_by_server = int(re.search(r"the body is (\d+)\+ bytes", answer).group(1))
    assert LIMIT < read_by_server <= LIMIT + READ_SLACK  # the app stopped reading at the limit
    assert "connection: close" in answer.lower()
    assert sent >= total  # lingering close: the rest was read and discarded, not reset


def test_a_stream_past_the_lingering_bound_is_cut_off(server):
    total = LINGER_MIN_BYTES + 32 * 2**20
    # Past the bound the server closes with data unread, and its reset may drop the 413 the
    # client's kernel already had: retry such an empty answer, and only that.
    for _attempt in range(3):
        sock = connect(server, HEAD + "Transfer-Encoding: chunked\r\n")
        sent, answer = stream_until_answered(sock, total, limit_s=20.0)
        if answer:
            break
    assert status_of(answer) == 413
    assert sent < total  # the connection closed under the client: the rest never went in


@pytest.mark.parametrize("attempt", range(5))
def test_a_client_that_writes_the_whole_body_first_reads_the_413(server, attempt):
    body = b"x" * (32 * 2**20)  # far more than the kernel buffers between client and server
    request = urllib.request.Request(
        f"{server.base}/predict", data=body, headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert "limit is" in refused.value.read().decode()


def test_a_declared_length_past_the_limit_is_refused_before_the_body(server):
    sock = connect(server, HEAD + f"Content-Length: {100 * LIMIT}\r\n")
    started = time.monotonic()
    sent, answer = stream_until_answered(sock, total=0)  # send no body at all
    assert status_of(answer) == 413 and sent == 0
    assert time.monotonic() - started < TIMEOUT_MS / 1000.0  # not waiting for the body


def test_a_trickling_body_gets_408_at_the_deadline(server):
    sock = connect(server, HEAD + "Content-Length: 1000\r\n")
    sock.sendall(b'{"image": "')  # and then nothing more
    started = time.monotonic()
    _, answer = stream_until_answered(sock, total=0, limit_s=TIMEOUT_MS / 1000.0 + 5)
    waited = time.monotonic() - started
    assert status_of(answer) == 408
    assert "connection: close" in answer.lower()
    assert waited < TIMEOUT_MS / 1000.0 + 2


def test_the_server_still_answers_after_the_abuse(server):
    png = CIFAR_PNGS[0].read_bytes()
    answer = httpx.post(f"{server.base}/predict", files={"file": ("x.png", png)}, timeout=10)
    assert answer.status_code == 200
