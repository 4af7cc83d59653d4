"""The FastAPI application and the process around it: `create_app` (the factory wiring every
room together), the ASGI middlewares (prediction metrics, lingering close) and the draining
uvicorn server `python -m service` runs.
"""

from service.app.factory import create_app, precision_policy
from service.app.lingering import LINGER_MIN_BYTES
from service.app.server import DrainingServer, build_config

__all__ = [
    "LINGER_MIN_BYTES",
    "DrainingServer",
    "build_config",
    "create_app",
    "precision_policy",
]
