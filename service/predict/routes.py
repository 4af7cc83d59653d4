"""HTTP routes; each handler only translates between HTTP and the service objects."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from model.actions import ACTIONS
from service.inputs import (
    MAX_MODEL_NAME,
    HealthResponse,
    ModelInfo,
    ModelsResponse,
    PredictJSON,
    PredictResponse,
    ReadyResponse,
    error_responses,
    inline_json_schema,
)
from service.predict.handler import predict as run_prediction
from service.repository import StateDep


def is_prediction_path(path: str) -> bool:
    """The routes whose answers dynalay_requests_total counts."""
    return path == "/predict" or (path.startswith("/v2/models/") and path.endswith("/infer"))


router = APIRouter()

PREDICT_ERRORS = error_responses(400, 401, 404, 408, 413, 415, 422, 500, 503, 504)

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_json_schema(PredictJSON)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string", "maxLength": MAX_MODEL_NAME},
                        "action": {"type": "string", "enum": list(ACTIONS)},
                    },
                }
            },
        },
    }
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    responses=PREDICT_ERRORS,
    openapi_extra=_PREDICT_BODY,
)
async def predict(request: Request, state: StateDep) -> PredictResponse:
    """Classify one image (multipart `file` or JSON `image`) or one text (JSON `text`)."""
    return await run_prediction(request, state)


@router.get("/healthz", response_model=HealthResponse, responses=error_responses(503))
async def healthz(state: StateDep) -> JSONResponse:
    """Liveness: the process answers. Fails only when model loading failed for good."""
    if state.load_error:
        return JSONResponse({"error": state.load_error}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def readyz(state: StateDep) -> JSONResponse:
    """Readiness: every loadable model loaded and warmed up, and not shutting down."""
    body: dict = {"ready": state.ready, "models": list(state.models)}
    if state.failed:
        body["failed"] = state.failed
    if state.ready:
        return JSONResponse(body)
    return JSONResponse(
        body | {"error": state.not_ready_reason()},
        status_code=503,
        headers={"Retry-After": str(state.settings.retry_after_s)},
    )


@router.get("/models", response_model=ModelsResponse)
async def models(state: StateDep) -> ModelsResponse:
    """Loaded models: versions, modality, classes, engine, device and precision in force."""
    return ModelsResponse(
        models=[
            ModelInfo(
                name=m.name,
                version=m.meta.version,
                modality=m.meta.modality,
                arch=m.meta.arch,
                classes=list(m.meta.classes),
                engine=m.engine.name,
                device=m.engine.device,
                precision=m.engine.precision,
                layout=m.engine.layout,
                preprocessing=m.meta.preprocessing,
            )
            for m in state.models.values()
        ]
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
