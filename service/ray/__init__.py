"""The service on Ray Serve: the same app as replicas on a Ray cluster.

Needs the `ray` extra (`pip install -e '.[ray]'`). `python -m service.ray` runs a local
cluster; `service.ray.application:app_builder` is the import path for `serve deploy` and KubeRay.
Nothing here is imported by the single-process service, and the names below are imported on
first use (PEP 562): `import service.ray` loads neither Ray nor the app, and only
`app_builder` needs the `ray` extra.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "app_builder": "service.ray.application",
    "PROXY_CALLBACK": "service.ray.cluster",
    "PROXY_CALLBACK_ENV": "service.ray.cluster",
    "ServeWhenWarm": "service.ray.lifespan",
    "PeriodicBridge": "service.ray.metrics_bridge",
    "RegistryBridge": "service.ray.metrics_bridge",
    "ReplicaLostAs503": "service.ray.proxy",
    "proxy_middlewares": "service.ray.proxy",
    "ReplicaCount": "service.ray.readiness",
    "WarmReplicasReadiness": "service.ray.readiness",
    "RaySettings": "service.ray.settings",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
