"""The Open Inference Protocol's model repository extension over HTTP (Triton's API).

`POST /v2/repository/index` lists every model directory with its state (READY, UNAVAILABLE)
and the reason when it is not served as asked; `POST /v2/repository/models/{m}/load` loads or
reloads one, `.../unload` unloads it (DYNALAY_MODEL_CONTROL=explicit; repository/model_control.py).
Behind the API key when one is set, like the prediction routes.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.core import ServiceError
from service.inputs import error_responses, read_body
from service.predict import check_api_key
from service.repository import RepositoryControl, ServiceState, StateDep

router = APIRouter(prefix="/v2/repository", tags=["open inference protocol"])

MAX_BODY = 64 * 1024  # a repository request is a few parameters; no override files here
OVERRIDES = ("config",)  # Triton's load parameters that replace the model's files


@router.post("/index", responses=error_responses(400, 401, 503))
async def index(request: Request, state: StateDep) -> JSONResponse:
    """Every model in the repository: name, version, state and reason (body `{"ready": true}`
    lists only the served ones)."""
    control = _control(request, state)
    body = await _json_body(request)
    return JSONResponse(control.index(ready_only=bool(body.get("ready", False))))


@router.post("/models/{name}/load", responses=error_responses(400, 401, 404, 422, 503))
async def load(name: str, request: Request, state: StateDep) -> JSONResponse:
    """Load, verify and warm up the model's checkpoint, then swap it in for the version
    serving (which finishes what it holds); refused with the reason, the old one serving."""
    control = _control(request, state)
    parameters = (await _json_body(request)).get("parameters") or {}
    overrides = [k for k in parameters if k in OVERRIDES or str(k).startswith("file:")]
    if overrides:
        raise ServiceError(400, f"load parameters {overrides} are not supported; load from disk")
    await control.load(name)
    return JSONResponse({})


@router.post("/models/{name}/unload", responses=error_responses(400, 401, 404, 422, 503))
async def unload(name: str, request: Request, state: StateDep) -> JSONResponse:
    """Stop serving the model; requests it holds are still answered."""
    control = _control(request, state)
    await _json_body(request)  # `unload_dependents`: nothing here depends on another model
    await control.unload(name)
    return JSONResponse({})


def _control(request: Request, state: ServiceState) -> RepositoryControl:
    key = state.settings.api_key
    check_api_key(request.headers, key.get_secret_value() if key else None)
    if state.control is None:
        raise ServiceError(503, "the model repository is not open yet")
    return state.control


async def _json_body(request: Request) -> dict[str, Any]:
    """The optional JSON object body (tritonclient sends an empty one to the index)."""
    body = await read_body(request, MAX_BODY)
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ServiceError(400, "the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise ServiceError(400, "the body must be a JSON object")
    if not isinstance(parsed.get("parameters", {}), dict | None):
        raise ServiceError(400, "`parameters` must be a JSON object")
    return parsed
