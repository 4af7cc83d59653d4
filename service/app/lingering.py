"""Lingering close: an early answer (413, 408, ...) reaches a client that is still uploading.

When the service answers before the request body was read to its end, it closes the
connection (`Connection: close`, core/errors.py). Closing a socket with unread data makes the
kernel send a reset, and a client that writes its whole body before reading (Python's urllib,
most simple HTTP clients) then sees "connection reset" instead of the answer that was already on
its way. So, as nginx's lingering close does, this middleware sends the answer, then reads and
discards what the client still sends, for a bounded time and size, and only then lets the
server close: the client finishes writing, reads the 413, and the close is a clean one.

The bounds keep an abusive upload cheap: at most LINGER_S seconds in all, LINGER_IDLE_S
between two reads, and LINGER_FACTOR × the body limit (at least LINGER_MIN_BYTES) discarded;
past any of them the connection closes as before. A client that asked for `100-continue` and
got the answer instead sends no body, so nothing is awaited for it.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LINGER_S = 5.0  # nginx: lingering_time 30 s
LINGER_IDLE_S = 1.0  # nginx: lingering_timeout 5 s
LINGER_FACTOR = 8
LINGER_MIN_BYTES = 64 * 1024 * 1024


class LingeringCloseMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_discard = max(LINGER_MIN_BYTES, LINGER_FACTOR * max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_ended = False  # the app saw the request body's last message (or a disconnect)
        lingering = False  # the answer closes the connection with body still unread

        async def watching_receive() -> Message:
            nonlocal body_ended
            message = await receive()
            body_ended |= message["type"] != "http.request" or not message.get("more_body")
            return message

        async def holding_send(message: Message) -> None:
            nonlocal lingering
            if message["type"] == "http.response.start":
                lingering = not body_ended and _closes(message) and not _expects_continue(scope)
            if lingering and message["type"] == "http.response.body":
                # Send everything but the end of the answer: the server closes at the end.
                message = {**message, "more_body": True}
            await send(message)

        await self.app(scope, watching_receive, holding_send)
        if lingering:
            await self._discard_rest(watching_receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _discard_rest(self, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_S
        discarded = 0
        while discarded <= self.max_discard:
            wait_s = min(LINGER_IDLE_S, deadline - loop.time())
            if wait_s <= 0:
                return
            try:
                async with asyncio.timeout(wait_s):
                    message = await receive()
            except TimeoutError:
                return
            if message["type"] != "http.request":
                return  # the client went away
            discarded += len(message.get("body", b""))
            if not message.get("more_body"):
                return


def _closes(start: Message) -> bool:
    return any(
        name.lower() == b"connection" and value.lower() == b"close"
        for name, value in start.get("headers", [])
    )


def _expects_continue(scope: Scope) -> bool:
    return any(
        name.lower() == b"expect" and value.lower() == b"100-continue"
        for name, value in scope.get("headers", [])
    )
