"""POST /predict from request to answer: auth, body, model choice, then `classify`.

Heavy steps (base64, image decoding, tokenizing, the model) run off the event loop (in
classification.py, shared with the Open Inference Protocol); everything that fails on bad
input raises a `ServiceError` with a 4xx status.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from model.actions import ACTIONS, looped_layers
from service.inputs import EncodedText, PredictResponse, read_predict_input, validate_text
from service.predict.admission import admit, body_before
from service.predict.classification import Prepared, classify
from service.repository import ServedModel, ServiceState
from service.scheduling import Completed


async def predict(request: Request, state: ServiceState) -> PredictResponse:
    started = time.monotonic()
    deadline = admit(request, state)
    settings = state.settings
    payload = await body_before(deadline, read_predict_input(request, settings.max_body_bytes))
    if payload.text is not None:
        validate_text(payload.text, settings.max_text_bytes)
    served = state.resolve(payload.model, payload.modality)
    request.state.model = served.name  # the `model` label of dynalay_requests_total

    def prepare() -> list[Prepared]:
        return [served.preprocess(payload, settings)]

    classified = await classify(served, prepare, payload.action, deadline)
    (prepared,), (completed,) = classified.prepared, classified.answers
    return _response(served, completed, prepared, settings.top_k, started)


def _response(
    served: ServedModel,
    completed: Completed,
    prepared: Prepared,
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
