"""In Serve's HTTP proxy: a request whose replica died answers 503 + Retry-After, not a bare 500.

When a replica dies with requests in flight (killed, out of memory, crashed), Serve's proxy
gets an actor error for each of them and, for that error, ends the ASGI call without sending any
response, which the proxy's uvicorn turns into an empty 500. The service itself always answers
(its error handlers turn every failure into a JSON body), so "no response at all" here means the
replica went away: the client gets the service's 503 body and a Retry-After, and the retry goes
to a live replica. Predictions are idempotent, so retrying is always safe.

Serve installs it in each proxy when the cluster's environment has
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=service.ray.proxy:proxy_middlewares (`python -m
service.ray` sets it for its local cluster; deploy/ray sets it for KubeRay).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core import Settings


class ReplicaLostAs503:
    def __init__(self, app: ASGIApp, retry_after_s: int = 1) -> None:
        self.app = app
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, receive, send_and_note_start)
        if not started:
            answer = JSONResponse(
                {"error": "the replica handling this request stopped; retry the request"},
                status_code=503,
                headers={"Retry-After": str(self.retry_after_s)},
            )
            await answer(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """Serve's proxy callback: the middlewares its HTTP proxy wraps itself in."""
    return [Middleware(ReplicaLostAs503, retry_after_s=Settings().retry_after_s)]
