"""HTTP routes; each handler only translates between HTTP and the service objects."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import StateDep
from service.predict import predict as run_prediction
from service.schemas import (
    ErrorResponse,
    ModelInfo,
    ModelsResponse,
    PredictJSON,
    PredictResponse,
    ReadyResponse,
)


def is_prediction_path(path: str) -> bool:
    """The routes whose answers dynalay_requests_total counts."""
    return path == "/predict" or (path.startswith("/v2/models/") and path.endswith("/infer"))


router = APIRouter()

_ERRORS = {
    code: {"model": ErrorResponse, "description": what}
    for code, what in {
        400: "undecodable input",
        401: "missing or wrong API key",
        408: "the body did not arrive within the deadline",
        404: "unknown model",
        413: "body, image or text too large",
        415: "unsupported content type",
        422: "schema error",
        503: "not ready or overloaded (see Retry-After)",
        504: "deadline passed before an answer",
    }.items()
}

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictJSON.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string"},
                        "action": {"type": "string"},
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
    responses=_ERRORS,
    openapi_extra=_PREDICT_BODY,
)
async def predict(request: Request, state: StateDep) -> PredictResponse:
    """Classify one image (multipart `file` or JSON `image`) or one text (JSON `text`)."""
    return await run_prediction(request, state)


@router.get("/healthz")
async def healthz(state: StateDep) -> JSONResponse:
    """Liveness: the process answers. Fails only when model loading failed for good."""
    if state.load_error:
        return JSONResponse({"error": state.load_error}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def readyz(state: StateDep) -> JSONResponse:
    """Readiness: every model loaded and warmed up."""
    if state.ready:
        return JSONResponse({"ready": True, "models": list(state.models)})
    why = state.load_error or "models are loading"
    return JSONResponse(
        {"ready": False, "models": list(state.models), "error": why},
        status_code=503,
        headers={"Retry-After": str(state.settings.retry_after_s)},
    )


@router.get("/models", response_model=ModelsResponse)
async def models(state: StateDep) -> ModelsResponse:
    """Loaded models: versions, modality, classes, engine and device."""
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
                preprocessing=m.meta.preprocessing,
            )
            for m in state.models.values()
        ]
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
