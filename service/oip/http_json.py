"""The Open Inference Protocol (KServe v2) over HTTP, so Triton/KServe clients work unchanged.

Routes under /v2: server metadata (`GET /v2`), health, model metadata and readiness, Triton's
model configuration (`.../config`, where clients read max_batch_size) and infer, each also
under `/v2/models/{name}/versions/{version}/...`. Infer bodies are JSON or JSON + binary tensor
data (service/oip/oip_binary.py), optionally gzip/deflate-compressed (`Content-Encoding`); what an
infer does is service/oip/inference.py, shared with the gRPC service.
"""

from __future__ import annotations

import zlib

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.core import ServiceError
from service.inputs import (
    LiveResponse,
    ModelReadyResponse,
    ServerReadyResponse,
    error_responses,
    inline_json_schema,
    read_body,
)
from service.oip.inference import find_model, infer, model_config, model_metadata, server_metadata
from service.oip.oip_binary import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    InferRequestJSON,
    parse_request,
    render_answer,
)
from service.predict import admit, body_before
from service.repository import ServiceState, StateDep

router = APIRouter(prefix="/v2", tags=["open inference protocol"])

VERSIONED = "/models/{name}/versions/{version}"
_DECOMPRESSORS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_json_schema(InferRequestJSON)},
            BINARY_CONTENT_TYPE: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "the JSON request, then the inputs' binary data; the JSON's "
                    "length in the Inference-Header-Content-Length header",
                }
            },
        },
    },
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
            "description": "binary tensor data extension: bytes of JSON before the binary data",
        }
    ],
}
_INFER_ANSWERS = {
    200: {
        "description": "outputs in JSON, or JSON then binary outputs (header length as above)",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            BINARY_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    }
} | error_responses(400, 401, 404, 408, 413, 415, 422, 500, 503, 504)


@router.get("", responses=error_responses(503))
async def server() -> dict:
    """Server metadata: name, version and the protocol extensions supported."""
    return server_metadata()


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


@router.get("/models/{name}", responses=error_responses(404, 422, 503))
@router.get(VERSIONED, include_in_schema=False)
async def metadata(name: str, state: StateDep, version: str | None = None) -> dict:
    return model_metadata(find_model(state, name, version))


@router.get("/models/{name}/config", responses=error_responses(404, 422, 503))
@router.get(f"{VERSIONED}/config", include_in_schema=False)
async def config(name: str, state: StateDep, version: str | None = None) -> dict:
    """Triton's model configuration: max_batch_size, inputs/outputs with `dims`, batching."""
    return model_config(find_model(state, name, version), state)


@router.get(
    "/models/{name}/ready",
    response_model=ModelReadyResponse,
    responses={503: {"model": ModelReadyResponse}} | error_responses(422),
)
@router.get(f"{VERSIONED}/ready", include_in_schema=False)
async def model_ready(name: str, state: StateDep, version: str | None = None) -> JSONResponse:
    served = state.models.get(name)
    ok = state.ready and served is not None and version in (None, "", served.meta.version)
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


@router.post("/models/{name}/infer", responses=_INFER_ANSWERS, openapi_extra=_INFER_BODY)
@router.post(f"{VERSIONED}/infer", include_in_schema=False)
async def infer_route(
    name: str, request: Request, state: StateDep, version: str | None = None
) -> Response:
    deadline = admit(request, state)
    served = find_model(state, name, version)
    request.state.model = served.name  # the `model` label of dynalay_requests_total
    body = await body_before(deadline, _read_body(request, state))
    parsed = parse_request(body, request.headers.get(HEADER_LENGTH), served.name, version)
    answer = await infer(state, served, parsed, deadline)
    content, headers = render_answer(answer, parsed)
    return Response(content, headers=headers)


async def _read_body(request: Request, state: ServiceState) -> bytes:
    """The body, decompressed when the client says so; both sizes within the body limit."""
    limit = state.settings.max_body_bytes
    body = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in _DECOMPRESSORS:
        raise ServiceError(
            415, f"unsupported Content-Encoding {encoding[:32]!r}; accepted: gzip, deflate"
        )
    decompressor = zlib.decompressobj(_DECOMPRESSORS[encoding])
    try:
        plain = decompressor.decompress(body, limit + 1)  # never inflates past the limit
    except zlib.error:
        raise ServiceError(400, f"the body is not valid {encoding} data") from None
    if len(plain) > limit:
        raise ServiceError(413, f"the body inflates past the limit of {limit} bytes")
    if not decompressor.eof:
        raise ServiceError(400, f"the {encoding} body is truncated")
    return plain
