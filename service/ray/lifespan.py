"""A replica's lifespan: Serve sends it traffic only once every model is loaded and warm.

The app factory's lifespan starts loading in the background and completes at once, so a plain
process can answer /healthz while it loads. Serve, though, routes requests to a replica as soon
as its ASGI startup completes. This middleware holds `lifespan.startup.complete` back until the
service state is ready (or fails it when loading failed for good, so Serve replaces the
replica), and runs the given hooks when the replica starts serving and after it has drained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.repository import ServiceState

READY_POLL_S = 0.05


class ServeWhenWarm:
    def __init__(
        self,
        app: ASGIApp,
        state: ServiceState,
        on_serving: Callable[[], None],
        on_drained: Callable[[], Awaitable[None]],
    ) -> None:
        self.app = app
        self.state = state
        self.on_serving = on_serving  # runs on the replica's event loop
        self.on_drained = on_drained

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_once_warm(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                failure = await self._wait_until_warm()
                if failure is not None:
                    message = {"type": "lifespan.startup.failed", "message": failure}
                else:
                    self.on_serving()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.on_drained()
            await send(message)

        await self.app(scope, receive, send_once_warm)

    async def _wait_until_warm(self) -> str | None:
        """None once every model is ready; the reason when loading failed for good."""
        while not self.state.ready:
            if self.state.load_error is not None:
                return self.state.load_error
            if self.state.draining:  # stopped while loading: it will never be ready
                return self.state.not_ready_reason()
            await asyncio.sleep(READY_POLL_S)
        return None
