"""What every prediction route does before looking at the input: auth, readiness, deadline.

Shared by POST /predict, the Open Inference Protocol's HTTP infer route and gRPC ModelInfer
(whose metadata arrives as headers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from starlette.datastructures import Headers
from starlette.requests import Request

from service.core import CLOSE, ServiceError, retry_later
from service.predict.auth import check_api_key
from service.repository import ServiceState

T = TypeVar("T")


def admit(request: Request, state: ServiceState) -> float:
    """Check the API key and readiness; returns the request's deadline (time.monotonic)."""
    return admit_headers(request.headers, state)


def admit_headers(headers: Headers, state: ServiceState) -> float:
    """`admit` for a request known by its headers (HTTP, or gRPC metadata)."""
    settings = state.settings
    deadline = time.monotonic() + settings.request_timeout_ms / 1000.0
    key = settings.api_key.get_secret_value() if settings.api_key else None
    check_api_key(headers, key)
    if not state.ready:
        # Before anything is read: a refusal here means the request was never accepted.
        why = state.not_ready_reason()
        raise retry_later(503, f"the service is not ready: {why}", settings.retry_after_s)
    return deadline


async def body_before(deadline: float, reading: Awaitable[T]) -> T:
    """Await the body read, but not past the deadline: a trickling client gets a 408."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + (deadline - time.monotonic())):
            return await reading
    except TimeoutError:
        raise ServiceError(
            408, "the request body did not arrive within the deadline", CLOSE
        ) from None
