"""What every error answer must look like: JSON `{"error": str}`, nothing from the inside.

A stack trace, a source file or an absolute server path in a body tells an attacker how the
service is built and where it keeps its files; the server log is the place for them.
"""

from __future__ import annotations

import json
import re
from typing import Any

LEAKS = {
    "stack trace": re.compile(r"Traceback \(most recent call last\)|^\s+File \"", re.M),
    "source file": re.compile(r"\w+\.py\b"),
    "site-packages": re.compile(r"site-packages|dist-packages"),
    # An absolute path starts a token; `application/json` and `image/png` do not match.
    "absolute path": re.compile(r"(?<![\w.~-])/(?:tmp|home|root|usr|opt|work|var|etc|srv)/"),
    "object repr": re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>"),
}
MAX_ERROR_CHARS = 2000
RETRY_STATUSES = (503,)


def leaks(text: str) -> list[str]:
    """The kinds of internal detail found in `text`."""
    return [kind for kind, pattern in LEAKS.items() if pattern.search(text)]


def header(response: Any, name: str) -> str:
    """A header of an httpx answer or a schemathesis one (whose values are lists)."""
    value = response.headers.get(name) or ""
    return value[0] if isinstance(value, list) else value


def problems(response: Any, *, error_body: bool = True) -> list[str]:
    """Why this answer (httpx or schemathesis) breaks the error contract; empty when fine.

    `error_body=False` for status routes (readiness), whose 503 carries their own body.
    """
    status, text = response.status_code, response.text
    found = []
    if status >= 500 and status not in RETRY_STATUSES:
        found.append(f"server error {status}")
    if status < 400:
        return found
    found += [f"leaks a {kind}" for kind in leaks(text)]
    if not header(response, "content-type").startswith("application/json"):
        return [*found, f"not JSON: {header(response, 'content-type')!r}"]
    if not error_body:
        return found
    body = json.loads(text)
    if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
        found.append(f"not an error object: {text[:200]}")
    if len(text) > MAX_ERROR_CHARS:
        found.append(f"error body of {len(text)} chars")
    if status == 503 and not header(response, "retry-after"):
        found.append("503 without Retry-After")
    return found
