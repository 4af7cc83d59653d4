"""One Serve replica: the service's own app (`create_app`), served through `serve.ingress`.

Every replica loads the model repository itself and batches its own requests, exactly as
`python -m service` does; what it adds is Serve's view of it: traffic only once warm, /readyz
that waits for the sibling replicas, and its metrics forwarded to Ray's metrics endpoint.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from ray import serve

from service.app import create_app
from service.core import Settings
from service.ray.lifespan import ServeWhenWarm
from service.ray.metrics_bridge import PeriodicBridge, RayMetricSinks, RegistryBridge
from service.ray.readiness import ReplicaCount, WarmReplicasReadiness
from service.ray.settings import RaySettings

METRICS_SYNC_S = 1.0  # registry → Ray; Ray's own report interval adds to this


@serve.deployment
@serve.ingress()  # the app is built per replica, by __serve_build_asgi_app__
class DynaLayReplica:
    def __init__(self, settings: Settings, ray_settings: RaySettings) -> None:
        # No process collectors: Ray exports every worker's process metrics itself.
        registry = CollectorRegistry()
        # Replicas share a host: each would bind the same gRPC port. Through Ray the service
        # is HTTP only (Serve's proxy carries it); gRPC clients use `python -m service`.
        settings = settings.model_copy(update={"grpc_port": 0})
        app = create_app(settings, registry=registry)
        state = app.state.dynalay
        bridge = PeriodicBridge(RegistryBridge(registry, RayMetricSinks()), METRICS_SYNC_S)
        context = serve.get_replica_context()
        app.add_middleware(
            WarmReplicasReadiness,
            state=state,
            replicas=ReplicaCount(context.app_name, context.deployment),
            required=ray_settings.warm_replicas_required,
        )
        app.add_middleware(
            ServeWhenWarm, state=state, on_serving=bridge.start, on_drained=bridge.stop
        )
        self._app = app
        self._state = state

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._app

    def check_health(self) -> None:
        """Serve's periodic health check: a replica that cannot serve is replaced."""
        if self._state.load_error is not None:
            raise RuntimeError(self._state.load_error)
