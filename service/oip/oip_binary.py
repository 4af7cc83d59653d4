"""The HTTP body of an infer request and answer: JSON, plus the binary tensor data extension.

A request may be JSON alone, or JSON followed by binary tensor data: the header
`Inference-Header-Content-Length: N` says the first N bytes are the JSON; an input whose
`parameters.binary_data_size` is set has no `data` and takes that many bytes from the rest, in
the order of the inputs (service/oip/tensors.py has the layout). The answer carries an output in
binary when its requested output says `parameters.binary_data: true`, or, for outputs not
listed, when the request says `parameters.binary_data_output: true` (what tritonclient sends
when it asks for no output by name). A binary answer has `Inference-Header-Content-Length`
too, and each binary output `parameters.binary_data_size` instead of `data`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.core import ServiceError, describe_validation_errors
from service.oip.inference import InferenceAnswer, InferenceRequest, InferTensor, RequestedOutput
from service.oip.tensors import from_json, from_raw, to_json, to_raw

HEADER_LENGTH = "inference-header-content-length"
BINARY_CONTENT_TYPE = "application/octet-stream"
MAX_DIMS = 8


class InferInputJSON(BaseModel):
    name: str = Field(max_length=256)
    shape: list[int] = Field(max_length=MAX_DIMS)
    datatype: str = Field(max_length=16)
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None  # absent when the tensor is in the binary part


class RequestedOutputJSON(BaseModel):
    name: str = Field(max_length=256)
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequestJSON(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InferInputJSON] = Field(min_length=1, max_length=8)
    outputs: list[RequestedOutputJSON] = Field(default_factory=list, max_length=16)


def parse_request(
    body: bytes, header_length: str | None, model: str, version: str | None
) -> InferenceRequest:
    head, binary = _split(body, header_length)
    parsed = _parse_json(head)
    inputs, offset = [], 0
    for tensor in parsed.inputs:
        size = tensor.parameters.get("binary_data_size")
        if size is None:
            if tensor.data is None:
                raise ServiceError(400, f"input `{tensor.name}` has neither data nor binary data")
            data = from_json(tensor.name, tensor.datatype, tensor.shape, tensor.data)
        else:
            _check_size(tensor.name, size, offset, len(binary))
            raw = binary[offset : offset + size]
            data = from_raw(tensor.name, tensor.datatype, tensor.shape, raw)
            offset += size
        inputs.append(InferTensor(tensor.name, tensor.datatype, tuple(tensor.shape), data))
    if offset != len(binary):
        raise ServiceError(
            400, f"the binary part is {len(binary)} bytes but the inputs take {offset}"
        )
    return InferenceRequest(
        model=model,
        version=version,
        id=parsed.id,
        parameters=parsed.parameters,
        inputs=tuple(inputs),
        outputs=tuple(_requested(o) for o in parsed.outputs),
    )


def render_answer(
    answer: InferenceAnswer, request: InferenceRequest
) -> tuple[bytes, dict[str, str]]:
    """(body, headers): JSON alone, or JSON + binary outputs with the header length."""
    binary_by_default = request.parameters.get("binary_data_output") is True
    asked = {o.name: o.binary for o in request.outputs}
    outputs, blobs = [], []
    for output in answer.outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.data.shape),
        }
        wanted = asked.get(output.name)
        if wanted if wanted is not None else binary_by_default:
            blob = to_raw(output.data, output.datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = to_json(output.data, output.datatype)
        outputs.append(entry)
    body: dict[str, Any] = {
        "model_name": answer.model,
        "model_version": answer.version,
        "outputs": outputs,
    }
    body |= {"id": answer.id} if answer.id is not None else {}
    head = json.dumps(body, separators=(",", ":")).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    headers = {"content-type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(head))}
    return b"".join([head, *blobs]), headers


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise ServiceError(
            400,
            f"Inference-Header-Content-Length {header_length[:32]!r} is not a length within "
            f"the {len(body)}-byte body",
        )
    split = int(header_length)
    return body[:split], body[split:]


def _parse_json(head: bytes) -> InferRequestJSON:
    try:
        return InferRequestJSON.model_validate_json(head)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise ServiceError(
                400,
                "the body is not valid JSON; send an inference request as JSON, optionally "
                "followed by binary tensor data (with Inference-Header-Content-Length)",
            ) from None
        detail = describe_validation_errors(exc.errors())
        raise ServiceError(422, f"invalid inference request: {detail}") from None


def _check_size(name: str, size: object, offset: int, available: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ServiceError(400, f"input `{name}`: binary_data_size must be an integer ≥ 0")
    if offset + size > available:
        raise ServiceError(
            400, f"input `{name}` claims {size} binary bytes; only {available - offset} are left"
        )


def _requested(output: RequestedOutputJSON) -> RequestedOutput:
    if "classification" in output.parameters:
        raise ServiceError(
            400, "the classification extension is not supported; request `probabilities`"
        )
    binary = output.parameters.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise ServiceError(400, f"output `{output.name}`: binary_data must be true or false")
    return RequestedOutput(output.name, binary)
