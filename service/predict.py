"""POST /predict from request to answer: auth, body, model choice, preprocessing, batching.

Heavy steps (base64, image decoding, tokenizing, the model) run off the event loop; everything
that fails on bad input raises a `ServiceError` with a 4xx status.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from starlette.requests import Request

from model.actions import ACTIONS, looped_layers
from service.admission import admit, body_before
from service.batcher import Completed
from service.engines import EngineInput
from service.payload import PredictInput, read_predict_input
from service.schemas import PredictResponse
from service.state import ServedModel, ServiceState
from service.text import EncodedText, validate_text


async def predict(request: Request, state: ServiceState) -> PredictResponse:
    started = time.monotonic()
    deadline = admit(request, state)
    settings = state.settings
    payload = await body_before(deadline, read_predict_input(request, settings.max_body_bytes))
    if payload.text is not None:
        validate_text(payload.text, settings.max_text_bytes)
    served = state.resolve(payload.model, payload.modality)
    request.state.model = served.name  # the `model` label of dynalay_requests_total
    served.batcher.check_room()
    in_progress = state.metrics.requests_in_progress.labels(served.name)
    in_progress.inc()
    try:
        prepared = await _preprocess(served, payload, state)
        data = prepared.ids if isinstance(prepared, EncodedText) else prepared
        action = served.action_id(payload.action)
        completed = await served.batcher.submit(EngineInput(data, action), deadline)
    finally:
        in_progress.dec()
    response = _response(served, completed, prepared, settings.top_k, started)
    observe(state, served.name, response.action, completed)
    return response


async def _preprocess(
    served: ServedModel, payload: PredictInput, state: ServiceState
) -> np.ndarray | EncodedText:
    started = time.perf_counter()
    prepared = await asyncio.to_thread(served.preprocess, payload, state.settings)
    state.metrics.observe_stage(served.name, "preprocess", time.perf_counter() - started)
    return prepared


def _response(
    served: ServedModel,
    completed: Completed,
    prepared: np.ndarray | EncodedText,
    top_k: int,
    started: float,
) -> PredictResponse:
    sample, classes = completed.sample, served.meta.classes
    probs = sample.probabilities
    best = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:top_k]
    text = prepared if isinstance(prepared, EncodedText) else None
    return PredictResponse(
        model=served.name,
        model_version=served.meta.version,
        label=classes[sample.class_index],
        class_index=sample.class_index,
        probabilities={classes[i]: probs[i] for i in best},
        action=ACTIONS[sample.action],
        looped_layers=list(looped_layers(sample.action)),
        iterations=sample.iterations,
        converged=sample.converged,
        layer_evaluations=sample.layer_evaluations,
        macs=sample.macs,
        latency_ms=round((time.monotonic() - started) * 1000.0, 3),
        batch_size=completed.batch_size,
        input_tokens=text.n_tokens if text else None,
        truncated=text.truncated if text else None,
    )


def observe(state: ServiceState, model: str, action: str, completed: Completed) -> None:
    """Record an answered prediction (only answered ones: the counts then match the 200s)."""
    sample = completed.sample
    state.metrics.observe_prediction(
        model,
        action,
        looped_layers(sample.action),
        sample.iterations,
        sample.converged,
        sample.layer_evaluations,
        sample.macs,
    )
