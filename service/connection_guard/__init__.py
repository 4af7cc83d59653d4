"""Connection-level limits in front of uvicorn: request-head sizes, head and idle deadlines,
connection slots (overall and per client address). `GuardedProtocolFactory` is what uvicorn's
`http=` option gets; `uvicorn_options` the settings of uvicorn's own that go with it;
`grpc_server_options` the same limits for the gRPC listener."""

from service.connection_guard.grpc_options import grpc_max_concurrent_rpcs, grpc_server_options
from service.connection_guard.head import HeadRefused, HeadScanner
from service.connection_guard.limits import (
    FDS_PER_SLOT,
    RESERVED_FDS,
    ConnectionLimits,
    files_needed,
    fit_file_limit,
)
from service.connection_guard.protocol import (
    LINGER_S,
    GuardedConnection,
    GuardedProtocolFactory,
    uvicorn_options,
)
from service.connection_guard.table import ConnectionTable

__all__ = [
    "FDS_PER_SLOT",
    "LINGER_S",
    "RESERVED_FDS",
    "ConnectionLimits",
    "ConnectionTable",
    "GuardedConnection",
    "GuardedProtocolFactory",
    "HeadRefused",
    "HeadScanner",
    "files_needed",
    "fit_file_limit",
    "grpc_max_concurrent_rpcs",
    "grpc_server_options",
    "uvicorn_options",
]
