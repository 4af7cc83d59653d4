"""Load the model repository into the service state, following DYNALAY_ON_LOAD_ERROR.

A checkpoint that fails to load (tampered, truncated, missing file: model/checkpoint.py
refuses it naming the file) is never served. With `fail` nothing is served: `load_error` is set,
/healthz and /readyz say 503, and `python -m service` exits 3. With `skip` the other models are
served and the broken one is listed as not ready; if none loads, that is a `fail` as well.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from model.checkpoint import CheckpointError
from service.engines import Engine, EngineFactory, PrecisionError
from service.repository.discovery import (
    RepositoryError,
    discover,
    input_pipeline,
    load_engine,
    resolve_device,
)
from service.repository.public_errors import public_message
from service.repository.state import ServedModel, ServiceState
from service.scheduling import build_scheduler

log = logging.getLogger(__name__)

# Errors whose message already says everything; anything else gets its traceback logged.
EXPECTED_ERRORS = (CheckpointError, RepositoryError, PrecisionError)


async def load_models(state: ServiceState, factory: EngineFactory) -> None:
    settings = state.settings
    try:
        device = resolve_device(settings.device)
        directories = discover(settings.model_dir)
    except Exception as exc:
        _give_up(state, "model loading failed", exc)
        return
    for directory in directories:
        try:
            engine = await asyncio.to_thread(
                load_engine, factory, directory, device, settings.warmup
            )
            serve(state, engine)
        except Exception as exc:
            if settings.on_load_error == "fail":
                _give_up(state, f"model {directory.name!r} failed to load", exc)
                return
            _skip(state, directory, exc)
    if not state.models:
        state.load_error = f"no model could be loaded: {'; '.join(state.failed.values())}"
        log.error("%s; the service will not become ready", state.load_error)
        return
    state.ready = not state.draining  # a SIGTERM during loading wins
    log.info("loaded: %s", ", ".join(state.models))


def serve(state: ServiceState, engine: Engine) -> None:
    """Put a loaded engine behind its own scheduler (DYNALAY_LOOP_SCHEDULING)."""
    name = engine.meta.name
    if name in state.models:
        raise RepositoryError(
            f"two checkpoints are named {name!r}: {engine.meta.directory} and "
            f"{state.models[name].meta.directory}"
        )
    state.models[name] = start_serving(state, engine)
    publish(state, state.models[name])


def start_serving(state: ServiceState, engine: Engine) -> ServedModel:
    """A loaded engine behind its own, started scheduler; not yet in `state.models`."""
    image_spec, text_encoder = input_pipeline(engine)
    scheduler = build_scheduler(engine, state.metrics, state.settings)
    scheduler.start()
    return ServedModel(engine, scheduler, state.metrics, image_spec, text_encoder)


def publish(state: ServiceState, served: ServedModel) -> None:
    """dynalay_model_info and the model's series, for a model now in `state.models`."""
    engine = served.engine
    state.metrics.register_model(
        served.name,
        engine.meta.version,
        engine.name,
        engine.device,
        engine.meta.actions,
        engine.precision,
    )


def _give_up(state: ServiceState, what: str, exc: Exception) -> None:
    _log_failure(what, exc)
    state.load_error = f"{what}: {public_message(exc, state.settings.model_dir)}"


def _skip(state: ServiceState, directory: Path, exc: Exception) -> None:
    _log_failure(f"model {directory.name!r} failed to load and is skipped", exc)
    state.failed[directory.name] = public_message(exc, state.settings.model_dir)


def _log_failure(what: str, exc: Exception) -> None:
    # The log keeps the full paths (operators need them); the public message does not.
    log.error("%s: %s: %s", what, type(exc).__name__, exc, exc_info=_unexpected(exc))


def _unexpected(exc: Exception) -> bool:
    return not isinstance(exc, EXPECTED_ERRORS)
