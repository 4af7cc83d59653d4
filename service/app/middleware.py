"""Counts and times every answer of the prediction routes, whatever produced it.

A pure ASGI middleware sees the final status of every answer, including 401/413/415 raised
before a handler ran and 500s from unexpected errors, which a handler-level counter would miss.
The `model` label comes from `request.state.model`, set once the handler has resolved a model,
so a client's made-up model name never becomes a label value.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core import UNRESOLVED_MODEL, Metrics


class PredictionMetricsMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: Metrics, is_prediction: Callable[[str], bool]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.is_prediction = is_prediction  # path -> whether to count it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_prediction(scope["path"]):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})  # shared with request.state downstream
        status = 500  # what the client gets if the app raises before answering

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            model = state.get("model", UNRESOLVED_MODEL)
            self.metrics.observe_answer(model, status, time.perf_counter() - started)
