"""Request and response bodies of the HTTP API (design §4); field limits live here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ActionName = Literal["straight", "loop_l1", "loop_l1_l2", "loop_all"]  # model.actions.ACTIONS


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
    latency_ms: float = Field(description="server-side: body, preprocessing, queue and compute")
    batch_size: int = Field(description="requests in the batch this one ran in")
    input_tokens: int | None = Field(None, description="text only: tokens before truncation")
    truncated: bool | None = Field(None, description="text only: cut to the model's max_length")


class ErrorResponse(BaseModel):
    error: str


class ModelInfo(BaseModel):
    name: str
    version: str
    modality: str
    arch: str
    classes: list[str]
    engine: str
    device: str
    preprocessing: dict


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ReadyResponse(BaseModel):
    ready: bool
    models: list[str] = []
    error: str | None = None
