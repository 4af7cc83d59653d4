"""Request and response bodies of the HTTP API (docs/protocols.md); field limits live here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ActionName = Literal["straight", "loop_l1", "loop_l1_l2", "loop_all", "tta"]  # ACTIONS


class PredictJSON(BaseModel):
    """`application/json` body of POST /predict: exactly one of `image` or `text`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image: str | None = Field(
        None, description="base64 of a PNG/JPEG/WebP/BMP/GIF file (a data: URL is accepted)"
    )
    text: str | None = Field(None, description="UTF-8 text for a text model")
    model: str | None = Field(
        None, max_length=128, description="model name; optional when one model fits the input"
    )
    action: ActionName | None = Field(
        None, description="force this action instead of the agent's (benchmarks, debugging)"
    )

    @model_validator(mode="after")
    def _exactly_one_input(self) -> PredictJSON:
        if (self.image is None) == (self.text is None):
            raise ValueError("send exactly one of `image` (base64) or `text`")
        return self


class PredictResponse(BaseModel):
    model: str
    model_version: str
    label: str
    class_index: int
    probabilities: dict[str, float] = Field(description="top-k labels → probability, best first")
    action: ActionName
    looped_layers: list[str] = Field(description='e.g. ["layer1", "layer2"]')
    iterations: int = Field(description="fixed-point iterations; 0 for straight")
    converged: bool
    layer_evaluations: int = Field(description="single-layer evaluations executed")
    macs: int = Field(
        description="multiply-adds executed for this input, the straight pass included"
    )
    latency_ms: float = Field(description="server-side: body, preprocessing, queue and compute")
    batch_size: int = Field(description="requests in the batch this one ran in")
    input_tokens: int | None = Field(None, description="text only: tokens before truncation")
    truncated: bool | None = Field(None, description="text only: cut to the model's max_length")


class ErrorResponse(BaseModel):
    error: str


ERROR_MEANINGS = {
    400: "undecodable input (bad JSON, base64, image bytes, multipart, Content-Length)",
    401: "missing or wrong API key",
    404: "unknown model",
    408: "the body did not arrive within the deadline",
    413: "body, image or text too large",
    415: "unsupported content type",
    422: "schema error",
    500: "the batch holding this request failed, or the model's scores were not finite",
    503: "not ready, shutting down or overloaded (see Retry-After)",
    504: "deadline passed before an answer",
}


def inline_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined, for hand-written OpenAPI bodies.

    A `#/$defs/...` reference would resolve against the OpenAPI document, which has no `$defs`.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def error_responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries for these error codes, all with the `{"error": ...}` body."""
    return {code: {"model": ErrorResponse, "description": ERROR_MEANINGS[code]} for code in codes}


class ModelInfo(BaseModel):
    name: str
    version: str
    modality: str
    arch: str
    classes: list[str]
    engine: str
    device: str
    precision: str  # what the engine computes in: fp32, bf16, fp16
    layout: str  # image memory layout: nchw or nhwc (channels_last)
    preprocessing: dict


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ReadyResponse(BaseModel):
    ready: bool
    models: list[str] = []
    failed: dict[str, str] = Field(
        default_factory=dict, description="models left out (DYNALAY_ON_LOAD_ERROR=skip) → why"
    )
    error: str | None = None


class HealthResponse(BaseModel):
    status: str


class LiveResponse(BaseModel):
    live: bool


class ServerReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool
