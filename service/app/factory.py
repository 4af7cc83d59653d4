"""The app factory: `create_app(settings) -> FastAPI`.

Nothing heavy happens at import or in the factory. The lifespan starts the gRPC inference
service (DYNALAY_GRPC_PORT) and loads the model repository in the background (and, with
DYNALAY_MODEL_CONTROL=poll, keeps rescanning it: service/repository/model_control.py), so /healthz
answers (and /readyz says 503) while checkpoints load and warm up; /readyz turns 200 once every
model is ready. On shutdown the lifespan drains: it refuses new predictions, lets gRPC calls in
flight and every scheduler's queue finish within DYNALAY_SHUTDOWN_GRACE_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from service.app.lingering import LingeringCloseMiddleware
from service.app.middleware import PredictionMetricsMiddleware
from service.core import Metrics, Settings, install_error_handlers
from service.engines import (
    EngineFactory,
    PrecisionPolicy,
    engine_factories,
    get_engine_factory,
    in_own_process,
)
from service.oip import GrpcServer, repository_router
from service.oip import router as oip_router
from service.predict import is_prediction_path, router
from service.repository import ModelControl, ServiceState

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    engines: dict[str, EngineFactory] | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        settings: configuration; read from `DYNALAY_*` environment variables when omitted.
        registry: Prometheus registry for the metrics; a fresh one (with process metrics) when
            omitted, so two apps in one process never collide.
        engines: engine registry override (tests inject stubs); defaults to `service.engines`.
    """
    settings = settings or Settings()
    metrics = Metrics(registry or _default_registry())
    if engines is None:
        engines = engine_factories(settings.onnx_cache_dir, precision_policy(settings))
    factory = get_engine_factory(settings.engine, engines)
    if settings.engine_process:
        factory = in_own_process(factory)
    state = ServiceState(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.reset()
        control = state.control = ModelControl(state, factory)
        grpc_server = await _start_grpc(state)  # answers health (not ready) while loading
        loading = asyncio.create_task(control.run(), name="load-models")
        try:
            yield
        finally:
            state.begin_drain()
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            # Calls in flight finish within the grace period while the schedulers drain.
            stopping = [grpc_server.stop(settings.shutdown_grace_s)] if grpc_server else []
            await asyncio.gather(*stopping, _drain(state), control.close())

    app = FastAPI(
        title="DynaLay Serve",
        summary="Adaptive-depth classification: the agent picks which layers loop, per input.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.dynalay = state
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(oip_router)
    app.include_router(repository_router)
    app.add_middleware(
        PredictionMetricsMiddleware, metrics=metrics, is_prediction=is_prediction_path
    )
    # Outermost of ours: the metrics see the answer when it is sent, not when the socket closes.
    app.add_middleware(LingeringCloseMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


async def _drain(state: ServiceState) -> None:
    """Let every scheduler finish its queue, all within one grace period, then stop them."""
    grace_s = state.settings.shutdown_grace_s
    await asyncio.gather(*(served.stop(grace_s) for served in state.models.values()))
    answered = state.metrics.answers_by_status()
    log.info("drained; prediction answers by status over this run: %s", answered)


async def _start_grpc(state: ServiceState) -> GrpcServer | None:
    """The gRPC inference service on DYNALAY_GRPC_PORT (0: none); a port taken is fatal."""
    if state.settings.grpc_port == 0:
        return None
    server = GrpcServer(state)
    await server.start()
    return server


def _default_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def precision_policy(settings: Settings) -> PrecisionPolicy:
    """DYNALAY_PRECISION, DYNALAY_LAYOUT and the parity gate's bounds, for the engines."""
    return PrecisionPolicy(
        settings.precision,
        settings.layout,
        settings.parity_min_label_agreement,
        settings.parity_min_action_agreement,
    )
