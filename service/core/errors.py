"""One error type for every answer that is not a 200, and the handlers that render it.

Every error leaves the service as JSON `{"error": "..."}` whose message says what was wrong and
what is accepted. Bad input is always a 4xx; a 500 means a bug or a failed batch, and its body
never carries a stack trace (that goes to the log).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An answer with an HTTP status and a message meant for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# For answers given before the body was read to its end: the connection cannot carry another
# request, and closing it stops a client from streaming the rest of an oversized body into it.
CLOSE = {"Connection": "close"}


def retry_later(status: int, message: str, retry_after_s: int) -> ServiceError:
    """A 503-style error that tells the client when to come back."""
    return ServiceError(status, message, {"Retry-After": str(retry_after_s)})


def error_response(status: int, message: str, headers: dict[str, str] | None = None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def describe_validation_errors(errors: list[dict]) -> str:
    """Pydantic's error list as one readable line: `image: Input should be a valid string`."""
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.message, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, f"invalid request: {describe_validation_errors(exc.errors())}")


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error (details are in the server log)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
