"""Connection slots: how many are taken, by which client address, and who waits longest.

A connection takes a slot when it is accepted and gives it back when it closes. When every slot
is taken, the connection that has waited longest for a request head (idle between requests,
or a head trickling in) is closed to make room: a legitimate client, whose head arrives at
once, never waits behind those. Only when every slot carries a request in progress is the
newcomer refused (503). A client address over its own cap is refused, whatever is free.

Refused connections linger for a moment to deliver their answer (see protocol.py); those are
counted apart, and capped at one per slot, so they cannot take the file descriptors instead.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Protocol

from service.connection_guard.limits import ConnectionLimits

log = logging.getLogger(__name__)

REFUSAL_LOG_EVERY_S = 60.0  # under attack, one warning a minute, not one per connection


class Evictable(Protocol):
    client: str

    def evict(self) -> None:
        """Close this connection to free its slot (it waits for a head, nothing in progress)."""


class ConnectionTable:
    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self.lingering = 0
        self._per_client: Counter[str] = Counter()
        self._waiting: dict[Evictable, None] = {}  # insertion order = waiting since
        self._refused: Counter[str] = Counter()  # since the last warning
        self._last_warning = float("-inf")

    def admit(self, conn: Evictable) -> str | None:
        """Take a slot for `conn`; returns why not (a message for the 503) when it cannot."""
        limits = self.limits
        per_client = limits.max_connections_per_client
        if per_client and self._per_client[conn.client] >= per_client:
            self.note("per-client cap")
            return (
                f"this client address already holds {per_client} connections, the most one "
                "address may hold (DYNALAY_MAX_CONNECTIONS_PER_CLIENT); reuse them or retry "
                f"after {limits.retry_after_s} s"
            )
        if self.open >= limits.max_connections:
            if not self._waiting:
                self.note("every slot busy")
                return (
                    f"the server holds its maximum of {limits.max_connections} connections "
                    f"(DYNALAY_MAX_CONNECTIONS), each with a request in progress; retry after "
                    f"{limits.retry_after_s} s"
                )
            oldest = next(iter(self._waiting))
            self.note("evicted the longest-waiting connection")
            oldest.evict()  # gives its slot back through release()
        self.open += 1
        self._per_client[conn.client] += 1
        return None

    def release(self, conn: Evictable) -> None:
        self._waiting.pop(conn, None)
        self.open -= 1
        self._per_client[conn.client] -= 1
        if self._per_client[conn.client] <= 0:
            del self._per_client[conn.client]

    def start_waiting(self, conn: Evictable) -> None:
        """`conn` waits for a request head from now on (it may be evicted)."""
        self._waiting[conn] = None

    def stop_waiting(self, conn: Evictable) -> None:
        self._waiting.pop(conn, None)

    def connections_of(self, client: str) -> int:
        return self._per_client[client]

    def start_lingering(self) -> bool:
        """Whether a refused connection may linger (then it counts until stop_lingering)."""
        if self.lingering >= self.limits.max_connections:
            return False
        self.lingering += 1
        return True

    def stop_lingering(self) -> None:
        self.lingering -= 1

    def note(self, reason: str) -> None:
        """Count a refusal; logs a warning with the counts at most every REFUSAL_LOG_EVERY_S."""
        self._refused[reason] += 1
        now = time.monotonic()
        if now - self._last_warning >= REFUSAL_LOG_EVERY_S:
            log.warning(
                "connection limits (%d open, %d per client at most): %s",
                self.open,
                self.limits.max_connections_per_client,
                ", ".join(f"{n} × {why}" for why, n in self._refused.items()),
            )
            self._refused.clear()
            self._last_warning = now
