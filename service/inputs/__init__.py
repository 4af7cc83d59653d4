"""What a request carries and how it is read: the /predict body (size, content type, schema
→ `PredictInput`), the JSON shapes of the HTTP API, image decoding and text encoding.
"""

from service.inputs.images import ImageSpec, decode_image
from service.inputs.payload import (
    MAX_MODEL_NAME,
    PredictInput,
    decode_base64_image,
    read_body,
    read_predict_input,
)
from service.inputs.schemas import (
    HealthResponse,
    LiveResponse,
    ModelInfo,
    ModelReadyResponse,
    ModelsResponse,
    PredictJSON,
    PredictResponse,
    ReadyResponse,
    ServerReadyResponse,
    error_responses,
    inline_json_schema,
)
from service.inputs.text import EncodedText, TextEncoder, validate_text

__all__ = [
    "MAX_MODEL_NAME",
    "EncodedText",
    "HealthResponse",
    "ImageSpec",
    "LiveResponse",
    "ModelInfo",
    "ModelReadyResponse",
    "ModelsResponse",
    "PredictInput",
    "PredictJSON",
    "PredictResponse",
    "ReadyResponse",
    "ServerReadyResponse",
    "TextEncoder",
    "decode_base64_image",
    "decode_image",
    "error_responses",
    "inline_json_schema",
    "read_body",
    "read_predict_input",
    "validate_text",
]
