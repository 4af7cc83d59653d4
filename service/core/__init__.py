"""What every room of the service leans on: its settings (`DYNALAY_*`), the one error type
and the handlers that render it as JSON, and the Prometheus metrics.
"""

from service.core.errors import (
    CLOSE,
    ServiceError,
    describe_validation_errors,
    install_error_handlers,
    retry_later,
)
from service.core.metrics import UNRESOLVED_MODEL, Metrics
from service.core.settings import Settings, default_onnx_cache_dir

__all__ = [
    "CLOSE",
    "UNRESOLVED_MODEL",
    "Metrics",
    "ServiceError",
    "Settings",
    "default_onnx_cache_dir",
    "describe_validation_errors",
    "install_error_handlers",
    "retry_later",
]
