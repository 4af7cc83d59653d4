"""Optional API key for /predict: `X-API-Key: <key>` or `Authorization: Bearer <key>`."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers

from service.core import ServiceError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dynalay"'}


def check_api_key(headers: Headers, expected: str | None) -> None:
    """Raise 401 unless no key is configured or the request carries the right one."""
    if expected is None:
        return
    offered = _offered_key(headers)
    if offered is None:
        raise ServiceError(401, "an API key is required: send X-API-Key or Bearer", CHALLENGE)
    # Constant-time, on bytes: headers arrive latin-1 decoded, and compare_digest rejects
    # non-ASCII str.
    if not hmac.compare_digest(offered.encode("latin-1"), expected.encode()):
        raise ServiceError(401, "wrong API key", CHALLENGE)


def _offered_key(headers: Headers) -> str | None:
    if "x-api-key" in headers:
        return headers["x-api-key"]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None
