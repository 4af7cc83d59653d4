"""The Open Inference Protocol (KServe v2) subset, so Triton/KServe clients work unchanged.

Routes: /v2/health/live, /v2/health/ready, /v2/models/{name}, /v2/models/{name}/ready and
POST /v2/models/{name}/infer. An image model takes either `input` FP32 [B, 3, H, W] (already
normalised, as Triton clients send) or `image` BYTES [B] (base64 image files, decoded like
/predict); a text model takes `text` BYTES [B]. Every sample goes through the model's batcher,
so protocol traffic and /predict traffic batch together. `parameters.action` forces an action.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.actions import ACTIONS
from service.admission import admit, body_before
from service.deps import StateDep
from service.engines import EngineInput
from service.errors import ServiceError, describe_validation_errors
from service.payload import PredictInput, read_body
from service.predict import observe
from service.schemas import (
    LiveResponse,
    ModelReadyResponse,
    ServerReadyResponse,
    error_responses,
    inline_json_schema,
)
from service.state import ServedModel, ServiceState
from service.text import EncodedText, validate_text

OUTPUT_TYPES = {
    "probabilities": "FP32",  # [B, n_classes]; the others are [B]
    "class_index": "INT64",
    "action": "INT64",  # index into model.actions.ACTIONS
    "iterations": "INT64",
    "converged": "BOOL",
    "layer_evaluations": "INT64",
}


router = APIRouter(prefix="/v2", tags=["open inference protocol"])


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InferInput] = Field(min_length=1, max_length=1)


@router.get("/health/live", response_model=LiveResponse, responses={503: {"model": LiveResponse}})
async def live(state: StateDep) -> JSONResponse:
    return JSONResponse({"live": state.load_error is None}, 200 if not state.load_error else 503)


@router.get(
    "/health/ready",
    response_model=ServerReadyResponse,
    responses={503: {"model": ServerReadyResponse}},
)
async def ready(state: StateDep) -> JSONResponse:
    return JSONResponse({"ready": state.ready}, status_code=200 if state.ready else 503)


@router.get("/models/{name}", responses=error_responses(404, 422))
async def metadata(name: str, state: StateDep) -> dict:
    served = _model(state, name)
    meta = served.meta
    if meta.modality == "text":
        inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    else:
        height, width = meta.preprocessing["image_size"]
        inputs = [
            {"name": "input", "datatype": "FP32", "shape": [-1, 3, height, width]},
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
        ]
    return {
        "name": meta.name,
        "versions": [meta.version],
        "platform": served.engine.name,
        "inputs": inputs,
        "outputs": [
            {"name": name, "datatype": datatype, "shape": _shape(name, -1, len(meta.classes))}
            for name, datatype in OUTPUT_TYPES.items()
        ],
    }


@router.get(
    "/models/{name}/ready",
    response_model=ModelReadyResponse,
    responses={503: {"model": ModelReadyResponse}} | error_responses(422),
)
async def model_ready(name: str, state: StateDep) -> JSONResponse:
    ok = state.ready and name in state.models
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


@router.post(
    "/models/{name}/infer",
    responses=error_responses(400, 401, 404, 408, 413, 422, 500, 503, 504),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_json_schema(InferRequest)}},
        }
    },
)
async def infer(name: str, request: Request, state: StateDep) -> dict:
    deadline = admit(request, state)
    served = _model(state, name)
    request.state.model = served.name
    body = await body_before(deadline, read_body(request, state.settings.max_body_bytes))
    infer_request = _parse(body)
    action = _action(infer_request.parameters)
    _check_batch(infer_request.inputs[0], state.settings.max_batch_size)
    served.batcher.check_room()
    samples = await asyncio.to_thread(_samples, served, infer_request.inputs[0], state)
    done = await asyncio.gather(
        *(served.batcher.submit(EngineInput(x, action), deadline) for x in samples)
    )
    for completed in done:
        observe(state, served.name, ACTIONS[completed.sample.action], completed)
    return _outputs(served, infer_request.id, [c.sample for c in done])


def _model(state: ServiceState, name: str) -> ServedModel:
    served = state.models.get(name)
    if served is None:
        raise ServiceError(404, f"unknown model {name[:64]!r}; loaded: {', '.join(state.models)}")
    return served


def _parse(body: bytes) -> InferRequest:
    try:
        return InferRequest.model_validate_json(body)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise ServiceError(400, "the body is not valid JSON") from None
        detail = describe_validation_errors(exc.errors())
        raise ServiceError(422, f"invalid inference request: {detail}") from None


def _action(parameters: dict[str, Any]) -> int | None:
    action = parameters.get("action")
    if action is None:
        return None
    if action not in ACTIONS:
        raise ServiceError(422, f"unknown action {str(action)[:32]!r}; accepted: {ACTIONS}")
    return ACTIONS.index(action)


def _check_batch(tensor: InferInput, max_batch_size: int) -> None:
    """Refuse an oversized batch before decoding any of it (decoding is the expensive part)."""
    claimed = tensor.shape[0] if tensor.shape else 0
    items = len(tensor.data) if tensor.datatype == "BYTES" else 0
    if max(claimed, items) > max_batch_size:
        raise ServiceError(413, f"at most {max_batch_size} samples per request")


def _samples(served: ServedModel, tensor: InferInput, state: ServiceState) -> list[np.ndarray]:
    """Blocking (decoding, tokenizing): the per-sample arrays the engine takes."""
    modality, kind = served.meta.modality, (tensor.name, tensor.datatype)
    if modality == "image" and kind == ("input", "FP32"):
        return list(_fp32_images(served, tensor))
    if kind[1] == "BYTES" and kind[0] == ("text" if modality == "text" else "image"):
        if len(tensor.data) != _volume(tensor.shape) or len(tensor.shape) != 1:
            raise ServiceError(400, f"`{tensor.name}` data does not match shape {tensor.shape}")
        return [_one_bytes_sample(served, item, state) for item in tensor.data]
    accepted = "text BYTES [B]" if modality == "text" else "input FP32 [B,3,H,W] or image BYTES [B]"
    raise ServiceError(422, f"model {served.name!r} takes {accepted}, not {kind[0]} {kind[1]}")


def _fp32_images(served: ServedModel, tensor: InferInput) -> np.ndarray:
    spec = served.image_spec
    assert spec is not None
    expected = [3, spec.height, spec.width]
    # reshape() would accept a -1 batch dimension: insist on a real, positive one.
    if len(tensor.shape) != 4 or tensor.shape[1:] != expected or tensor.shape[0] < 1:
        raise ServiceError(400, f"`input` must have shape [B, {', '.join(map(str, expected))}]")
    try:
        array = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
    except (ValueError, TypeError):
        raise ServiceError(400, f"`input` data is not {_volume(tensor.shape)} numbers") from None
    if not np.isfinite(array).all():
        raise ServiceError(400, "`input` holds NaN or infinite values")
    return array


def _one_bytes_sample(served: ServedModel, item: Any, state: ServiceState) -> np.ndarray:
    if not isinstance(item, str):
        raise ServiceError(422, "BYTES data must be strings (base64 images, or texts)")
    if served.meta.modality == "text":
        validate_text(item, state.settings.max_text_bytes)
        prepared = served.preprocess(PredictInput("text", text=item), state.settings)
        assert isinstance(prepared, EncodedText)
        return prepared.ids
    prepared = served.preprocess(PredictInput("image", image=item), state.settings)
    assert isinstance(prepared, np.ndarray)
    return prepared


def _outputs(served: ServedModel, request_id: str | None, samples: list) -> dict:
    values = {
        "probabilities": [p for s in samples for p in s.probabilities],
        "class_index": [s.class_index for s in samples],
        "action": [s.action for s in samples],
        "iterations": [s.iterations for s in samples],
        "converged": [s.converged for s in samples],
        "layer_evaluations": [s.layer_evaluations for s in samples],
    }
    n, n_classes = len(samples), len(served.meta.classes)
    outputs = [
        {"name": k, "datatype": t, "shape": _shape(k, n, n_classes), "data": values[k]}
        for k, t in OUTPUT_TYPES.items()
    ]
    answer = {"model_name": served.name, "model_version": served.meta.version, "outputs": outputs}
    return answer | ({"id": request_id} if request_id is not None else {})


def _shape(output: str, batch: int, n_classes: int) -> list[int]:
    return [batch, n_classes] if output == "probabilities" else [batch]


def _volume(shape: list[int]) -> int:
    return int(np.prod(shape)) if shape and min(shape) >= 0 else -1
