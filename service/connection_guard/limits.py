"""What one connection may cost the server: head sizes, head and idle deadlines, slot counts.

One frozen object, built from the service's settings, shared by every connection's guard.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass, replace

from service.core import Settings

log = logging.getLogger(__name__)

# File descriptors kept for everything that is not a client connection (model files, the
# listeners, logs, the event loop's own). Per slot: the connection, one refused connection's
# lingering close (see protocol.LINGER_S: it holds no slot but an fd), one gRPC connection
# (grpc_options.py caps those at max_connections too).
RESERVED_FDS = 256
FDS_PER_SLOT = 3


@dataclass(frozen=True)
class ConnectionLimits:
    max_request_line_bytes: int = 8192  # beyond: 414
    max_header_line_bytes: int = 8192  # one header line; beyond: 431
    max_head_bytes: int = 32768  # request line and headers together; beyond: 431
    max_headers: int = 100  # header lines; beyond: 431
    head_timeout_s: float = 10.0  # a request head must arrive within this; beyond: 408
    keep_alive_timeout_s: float = 5.0  # an idle connection between requests is closed after it
    max_connections: int = 2048  # slots; when full, the longest-waiting idle one is closed
    max_connections_per_client: int = 512  # slots one client address may hold; 0: no cap
    retry_after_s: int = 1  # sent with the 503s

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_request_line_bytes=settings.max_request_line_bytes,
            max_header_line_bytes=settings.max_header_line_bytes,
            max_head_bytes=settings.max_head_bytes,
            max_headers=settings.max_headers,
            head_timeout_s=settings.head_timeout_s,
            keep_alive_timeout_s=settings.keep_alive_timeout_s,
            max_connections=settings.max_connections,
            max_connections_per_client=settings.max_connections_per_client,
            retry_after_s=settings.retry_after_s,
        )


def files_needed(limits: ConnectionLimits) -> int:
    """Open files the process needs when every slot is taken, as many refusals linger, and as
    many gRPC connections are open."""
    return FDS_PER_SLOT * limits.max_connections + RESERVED_FDS


def fit_file_limit(limits: ConnectionLimits) -> ConnectionLimits:
    """Raise the soft open-file limit so every slot can be used; when the hard limit forbids
    it, shrink `max_connections` to what fits, so the cap (a clear 503), not accept() failing
    with EMFILE, is what refuses clients."""
    needed = files_needed(limits)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return limits
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):  # above the kernel's nr_open, say: keep what we have
        pass
    if soft >= needed:
        log.info("open-file limit raised to %d for %d connections", soft, limits.max_connections)
        return limits
    fitting = max(1, (soft - RESERVED_FDS) // FDS_PER_SLOT)
    log.warning(
        "the open-file limit (%d) fits %d connections, not DYNALAY_MAX_CONNECTIONS=%d; "
        "serving with %d",
        soft,
        fitting,
        limits.max_connections,
        fitting,
    )
    return replace(limits, max_connections=fitting)
