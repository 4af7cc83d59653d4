"""A local single-node Ray cluster on loopback, and Serve on it.

Ray binds its own ports to the node's address; on a single-node cluster
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes that address 127.0.0.1 (Ray's "local only" mode,
the default on macOS and Windows), so nothing of the cluster listens beyond this machine. That
variable is read when `ray` is imported, and the cluster's processes inherit this process's
environment: `local_cluster_environment()` must run first.
"""

from __future__ import annotations

import os

from service.core import Settings
from service.ray.settings import RaySettings

LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "service.ray.proxy:proxy_middlewares"
# Serve gives a starting proxy 5 s to report ready and replaces it after three misses; a proxy
# starting beside two replicas that import torch on a busy 2-core machine needs longer.
PROXY_PATIENCE = {
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30",
}


def local_cluster_environment() -> None:
    """Before `import ray`: the cluster this process starts stays on 127.0.0.1, and Serve's
    proxy answers requests of a lost replica with 503 (see `service.ray.proxy`)."""
    os.environ[LOCAL_ONLY_ENV] = "0"
    os.environ[PROXY_CALLBACK_ENV] = PROXY_CALLBACK
    for name, value in PROXY_PATIENCE.items():
        os.environ.setdefault(name, value)


def start_local_cluster(ray_settings: RaySettings) -> None:
    """Start a cluster owned by this process (`ray.shutdown()` stops every part of it)."""
    import ray

    ray.init(
        num_cpus=ray_settings.num_cluster_cpus,
        include_dashboard=False,
        _metrics_export_port=ray_settings.metrics_port,
        _temp_dir=str(ray_settings.temp_dir) if ray_settings.temp_dir else None,
        _system_config={"metrics_report_interval_ms": ray_settings.metrics_report_interval_ms},
        log_to_driver=True,
        configure_logging=False,
    )


def start_serve(settings: Settings) -> None:
    """Serve's HTTP proxy on the service's host and port (one proxy: one node)."""
    from ray import serve

    http_options = {"host": settings.host, "port": settings.port}
    serve.start(proxy_location="HeadOnly", http_options=http_options)
