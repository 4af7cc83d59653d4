"""The connection limits, as gRPC core enforces them on the gRPC listener (DYNALAY_GRPC_PORT).

gRPC speaks HTTP/2 through its own C core, not through uvicorn and the guard, so each limit is
one of its channel arguments instead:

- head size → `grpc.max_metadata_size` / `grpc.absolute_max_metadata_size` (a call's
  metadata is its header block; beyond it the call fails with RESOURCE_EXHAUSTED);
- head deadline → `grpc.server_handshake_timeout_ms` (a connection that does not finish the
  HTTP/2 preface and SETTINGS in time is closed: slowloris below the calls);
- idle keep-alive → `grpc.max_connection_idle_ms` (GOAWAY after that long without calls; the
  client reconnects when it calls again);
- connection cap → `grpc.max_allowed_incoming_connections` (there is no per-address cap);
- requests per connection → `grpc.max_concurrent_streams`, and calls in progress overall →
  `maximum_concurrent_rpcs` (RESOURCE_EXHAUSTED beyond), so the messages in memory are
  bounded by settings (× DYNALAY_MAX_BODY_BYTES) as over HTTP.
Ping floods are refused by gRPC's defaults (5 min between pings without data, 2 strikes).
"""

from __future__ import annotations

from service.connection_guard.limits import ConnectionLimits

MAX_CONCURRENT_STREAMS = 128  # calls in flight on one HTTP/2 connection, as nginx's default


def grpc_server_options(limits: ConnectionLimits) -> list[tuple[str, int]]:
    return [
        ("grpc.max_metadata_size", limits.max_head_bytes),
        ("grpc.absolute_max_metadata_size", limits.max_head_bytes),
        ("grpc.server_handshake_timeout_ms", round(limits.head_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", round(limits.keep_alive_timeout_s * 1000)),
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
    ]


def grpc_max_concurrent_rpcs(limits: ConnectionLimits) -> int:
    """Calls in progress at once, over all connections: one per HTTP slot."""
    return limits.max_connections
