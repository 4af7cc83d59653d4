"""The guard in front of uvicorn's HTTP/1.1 protocol on every connection.

uvicorn parses request heads without limits or deadlines of its own (with httptools: no limit
on a header's size, re-copied on every read, so a 64 MiB header costs seconds of CPU and
tens of MiB; no deadline until a first request completes). The guard sits between the
transport and uvicorn's h11 protocol:

- while the parser waits for a request head, the guard holds the head's bytes itself and
  follows them with a HeadScanner: past a size limit it answers 414/431, past the head
  deadline 408 (or closes silently when nothing arrived), after `keep_alive_timeout_s` of
  silence between requests it closes; once the blank line is there, the whole head goes to
  the parser at once, so the parser never holds an unfinished head (and uvicorn's protocol is
  only created for a connection's first complete head);
- while a request is in progress, bytes go straight to the parser (the body has its own limit
  and deadline in the app); an answer given before the body was read ends the connection;
- bytes that follow a request before its answer is complete (pipelining) stay in h11's buffer,
  bounded by h11's max_incomplete_event_size (= max_head_bytes) and by uvicorn pausing the
  socket; the guard scans them before h11 parses them, and h11 bounds chunk-size lines and
  trailers the same way. (httptools would consume them unseen, so h11 is the parser here.)

A refused connection is answered and half-closed (FIN), and closed LINGER_S later or when the
client closes, so that the answer is read, not lost to the reset a close with unread input
sends. Meanwhile, input is read and dropped (up to LINGER_MAX_BYTES), except after a head past
a size limit: then the socket is not read at all, so an attacker pumping a huge head costs no
CPU; a client that reads while sending (curl, browsers, httpx) reads its 414/431 all the same.
Slots and eviction: table.py.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.connection_guard.head import HeadRefused, HeadScanner
from service.connection_guard.limits import ConnectionLimits
from service.connection_guard.table import ConnectionTable

LINGER_S = 2.0
LINGER_MAX_BYTES = 16 * 2**20  # beyond this the client is not listening: reset it


class _Phase(enum.Enum):
    HEAD = "head"  # the parser waits for a request head; the guard holds and scans its bytes
    REQUEST = "request"  # a head went through; bytes go straight to the parser
    CLOSING = "closing"  # answered or timed out; the rest of the input is dropped


class _ReportingH11(H11Protocol):
    """uvicorn's h11 protocol, letting its guard see pipelined bytes before they are parsed."""

    def __init__(self, *args: Any, guard: GuardedConnection, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard

    def on_response_complete(self) -> None:
        if self._guard.before_next_cycle():
            super().on_response_complete()  # starts the next cycle, parses what is buffered
            self._guard.after_parser()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's one message for every h11 error; say which kind it was.
        super().send_400_response(self._guard.parser_error_message())


@dataclass(frozen=True)
class _Server:
    """What every connection of one server shares."""

    config: uvicorn.Config
    server_state: Any  # uvicorn's ServerState: its `connections` is what shutdown closes
    app_state: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    table: ConnectionTable


class GuardedConnection(asyncio.Protocol):
    """One connection: the guard, and uvicorn's h11 protocol once a first head is complete
    (a connection that never completes one costs no parser)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._loop = server.loop
        self._table = server.table
        self._limits: ConnectionLimits = server.table.limits
        self.client = ""  # the peer's address: the per-client count's key
        self._transport: asyncio.Transport | None = None
        self._inner: _ReportingH11 | None = None
        self._phase = _Phase.HEAD
        self._scanner = HeadScanner(self._limits)
        self._pending = bytearray()  # the unfinished head, ≤ max_head_bytes
        self._timer: asyncio.TimerHandle | None = None
        self._requests = 0  # heads passed on over this connection
        self._has_slot = False
        self._lingering = False
        self._dropped = 0  # bytes read and dropped while lingering

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport  # asyncio's or uvloop's (not an asyncio.Transport subclass)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refusal = self._table.admit(self)
        if refusal is not None:
            self._answer_and_close(503, refusal, retry_after=True)
            return
        self._has_slot = True
        self._server.server_state.connections.add(self)  # uvicorn's shutdown closes it
        self._await_head(b"")

    def data_received(self, data: bytes) -> None:
        if self._phase is _Phase.CLOSING:
            self._drop(len(data))
        elif self._phase is _Phase.REQUEST:
            assert self._inner is not None
            self._inner.data_received(data)
            self.after_parser()
        else:
            self._head_data(data)

    def eof_received(self) -> bool | None:
        if self._phase is _Phase.CLOSING or self._inner is None:
            return None  # the transport closes
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.server_state.connections.discard(self)
        self._cancel_timer()
        self._give_back_slot()
        if self._lingering:
            self._lingering = False
            self._table.stop_lingering()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # called by uvicorn, the table and the parser

    def shutdown(self) -> None:
        """uvicorn is shutting down. With a parser, that one is in uvicorn's set too and
        decides (an idle connection closes, a request in progress finishes)."""
        if self._inner is None and self._transport is not None:
            self._transport.close()

    def evict(self) -> None:
        if self._scanner.bytes_seen:
            message = (
                f"the server is at its limit of {self._limits.max_connections} connections "
                "and closed this one, the longest waiting for its request head"
            )
            self._answer_and_close(503, message, retry_after=True)
        else:
            self._close_quietly()

    def before_next_cycle(self) -> bool:
        """A response is complete: scan what the client pipelined before h11 parses it.
        Returns whether the parser may go on (False: the connection is closing)."""
        assert self._inner is not None and self._transport is not None
        conn = self._inner.conn
        if self._transport.is_closing():
            return True
        if conn.their_state is h11.SEND_BODY:
            # Answered before its body was read to the end (a 401, a 404, ...). Keeping the
            # connection would let the client trickle the rest forever, with no deadline of
            # the app's left to stop it: end it like a refusal, without another answer.
            self._stop_serving()
            self._linger_then_close()
            return False
        unparsed = conn.trailing_data[0]
        if conn.their_state is not h11.DONE or not unparsed:
            return True
        try:
            HeadScanner(self._limits).feed(unparsed)
        except HeadRefused as refused:
            self._refuse_head(refused)
            return False
        return True

    def parser_error_message(self) -> str:
        assert self._inner is not None
        if len(self._inner.conn.trailing_data[0]) > self._limits.max_head_bytes:
            return (
                f"a chunk-size line or the trailer section is larger than "
                f"{self._limits.max_head_bytes} bytes (DYNALAY_MAX_HEAD_BYTES)"
            )
        return "Invalid HTTP request received: a malformed request line, header or chunked body"

    def after_parser(self) -> None:
        """The parser may have finished a cycle: if it waits for a head now, hold it here."""
        assert self._inner is not None and self._transport is not None
        if self._phase is not _Phase.REQUEST or self._transport.is_closing():
            return
        conn = self._inner.conn
        if conn.their_state is h11.IDLE:
            self._await_head(conn.trailing_data[0])

    # the head

    def _await_head(self, unparsed: bytes) -> None:
        self._phase = _Phase.HEAD
        self._scanner = HeadScanner(self._limits)
        self._table.start_waiting(self)
        if unparsed:  # the start of a pipelined head, already in h11's buffer
            try:
                self._scanner.feed(unparsed)
            except HeadRefused as refused:
                self._refuse_head(refused)
                return
        if unparsed or self._requests == 0:
            self._arm(self._limits.head_timeout_s, self._head_timed_out)
        else:
            self._arm(self._limits.keep_alive_timeout_s, self._close_quietly)

    def _head_data(self, data: bytes) -> None:
        if self._requests and not self._scanner.bytes_seen:
            # The first byte after an idle keep-alive wait: the head deadline starts now.
            self._arm(self._limits.head_timeout_s, self._head_timed_out)
        try:
            end = self._scanner.feed(data)
        except HeadRefused as refused:
            self._refuse_head(refused)
            return
        if end is None:
            self._pending += data
            return
        head = bytes(self._pending) + data if self._pending else data
        self._pending = bytearray()
        self._phase = _Phase.REQUEST
        self._requests += 1
        self._cancel_timer()
        self._table.stop_waiting(self)
        if self._inner is None:
            self._inner = self._start_parser()
        self._inner.data_received(head)
        self.after_parser()

    def _start_parser(self) -> _ReportingH11:
        server = self._server
        inner = _ReportingH11(
            config=server.config,
            server_state=server.server_state,
            app_state=server.app_state,
            _loop=server.loop,
            guard=self,
        )
        inner.connection_made(self._transport)
        return inner

    def _head_timed_out(self) -> None:
        if self._scanner.bytes_seen:
            message = (
                f"the request head did not arrive within {self._limits.head_timeout_s:g} s "
                "(DYNALAY_HEAD_TIMEOUT_S)"
            )
            self._answer_and_close(408, message, note=True)
        else:
            self._close_quietly()  # nothing was asked: nothing to answer

    # closing

    def _refuse_head(self, refused: HeadRefused) -> None:
        # A client past a size limit may be pumping gigabytes: stop reading rather than read
        # them to drop them. A client that reads while it sends (curl, browsers, httpx) reads
        # the answer; one that writes all before reading gets the reset after LINGER_S.
        self._answer_and_close(refused.status, refused.message, note=True, drop=False)

    def _answer_and_close(
        self,
        status: int,
        message: str,
        retry_after: bool = False,
        note: bool = False,
        drop: bool = True,
    ) -> None:
        """Only while no response is in progress: the parser and the app write nothing more.
        `note`: count it among the refusals the table logs (it counts its own 503s)."""
        assert self._transport is not None
        if note:
            self._table.note(f"{status} {HTTPStatus(status).phrase}")
        self._stop_serving()
        retry = self._limits.retry_after_s if retry_after else None
        self._transport.write(render_error(status, message, retry))
        self._linger_then_close(drop)

    def _linger_then_close(self, drop: bool = True) -> None:
        """FIN after what was written, then the connection is closed after LINGER_S, or once
        the client closes. With `drop`, what the client still sends is read and dropped (up to
        LINGER_MAX_BYTES), so a client that writes all before reading is not reset; without,
        the socket is not read any more."""
        assert self._transport is not None
        if self._transport.can_write_eof() and self._table.start_lingering():
            self._transport.write_eof()
            if drop:
                self._transport.resume_reading()  # the parser may have paused it
            else:
                self._transport.pause_reading()
            self._lingering = True
            self._arm(LINGER_S, self._transport.close)
        else:
            self._transport.close()

    def _close_quietly(self) -> None:
        assert self._transport is not None
        self._stop_serving()
        self._transport.close()

    def _stop_serving(self) -> None:
        self._cancel_timer()
        self._give_back_slot()
        self._phase = _Phase.CLOSING
        self._pending = bytearray()

    def _drop(self, count: int) -> None:
        self._dropped += count
        if self._dropped > LINGER_MAX_BYTES and self._transport is not None:
            self._transport.close()

    def _give_back_slot(self) -> None:
        if self._has_slot:
            self._has_slot = False
            self._table.release(self)

    def _arm(self, delay_s: float, callback: Callable[[], object]) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(delay_s, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def render_error(status: int, message: str, retry_after_s: int | None) -> bytes:
    """A complete HTTP/1.1 answer with the service's `{"error": ...}` body; closes."""
    body = json.dumps({"error": message}).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after_s is not None:
        lines.append(f"retry-after: {retry_after_s}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class GuardedProtocolFactory:
    """What uvicorn's `http=` gets: builds one GuardedConnection per accepted connection,
    all sharing one ConnectionTable."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.table = ConnectionTable(limits)
        self._server: _Server | None = None

    def __call__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> GuardedConnection:
        if self._server is None:  # the same for every connection of this server
            loop = _loop or asyncio.get_running_loop()
            self._server = _Server(config, server_state, app_state, loop, self.table)
        return GuardedConnection(self._server)


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """uvicorn.Config options for a guarded server."""
    return {
        "http": GuardedProtocolFactory(limits),
        # The guard's transport must stay its own: no protocol switch under it.
        "ws": "none",
        # h11's bound on whatever the guard does not hold (pipelined heads, trailers).
        "h11_max_incomplete_event_size": limits.max_head_bytes,
        # The guard closes idle connections and slow heads; uvicorn's own keep-alive timer, not
        # told when the guard holds a head's first bytes, must not fire before the guard's.
        "timeout_keep_alive": math.ceil(limits.keep_alive_timeout_s + limits.head_timeout_s) + 1,
    }
