"""The app factory: `create_app(settings) -> FastAPI`.

Nothing heavy happens at import or in the factory. The lifespan starts loading the model
repository in the background, so /healthz answers (and /readyz says 503) while checkpoints load
and warm up; /readyz turns 200 once every model is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from service.batcher import MicroBatcher
from service.engines import Engine, EngineFactory, get_engine_factory
from service.errors import install_error_handlers
from service.metrics import Metrics
from service.middleware import PredictionMetricsMiddleware
from service.oip import router as oip_router
from service.repository import discover, input_pipeline, load_engine, resolve_device
from service.routes import is_prediction_path, router
from service.settings import Settings
from service.state import ServedModel, ServiceState

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
    factory = get_engine_factory(settings.engine, engines)
    state = ServiceState(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load_models(state, factory), name="load-models")
        try:
            yield
        finally:
            state.ready = False
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            for served in state.models.values():
                await served.batcher.stop()

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
    app.add_middleware(
        PredictionMetricsMiddleware, metrics=metrics, is_prediction=is_prediction_path
    )
    return app


async def _load_models(state: ServiceState, factory: EngineFactory) -> None:
    settings = state.settings
    try:
        device = resolve_device(settings.device)
        for directory in discover(settings.model_dir):
            engine = await asyncio.to_thread(
                load_engine, factory, directory, device, settings.warmup
            )
            _serve(state, engine)
    except Exception as exc:
        state.load_error = f"model loading failed: {type(exc).__name__}: {exc}"
        log.exception("model loading failed; the service will not become ready")
        return
    state.ready = True
    log.info("ready: %s", ", ".join(state.models))


def _serve(state: ServiceState, engine: Engine) -> None:
    settings, name = state.settings, engine.meta.name
    if name in state.models:
        raise ValueError(
            f"two checkpoints are named {name!r}: {engine.meta.directory} and "
            f"{state.models[name].meta.directory}"
        )
    image_spec, text_encoder = input_pipeline(engine)
    batcher = MicroBatcher(
        engine,
        state.metrics,
        max_batch_size=settings.max_batch_size,
        max_delay_s=settings.max_queue_delay_ms / 1000.0,
        max_queue=settings.max_queue,
        retry_after_s=settings.retry_after_s,
    )
    batcher.start()
    state.models[name] = ServedModel(engine, batcher, image_spec, text_encoder)
    state.metrics.register_model(name, engine.meta.version, engine.name, engine.device)


def _default_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
