"""The Open Inference Protocol's model, independent of the wire: metadata, config and infer.

HTTP (http_json.py) and gRPC (grpc_server.py) both decode their request into an
`InferenceRequest`, call `infer`, and encode the `InferenceAnswer`; `infer` hands the samples
to `classify` (predict/classification.py), as /predict does, so all three take the same actions,
honour the same limits and share the model's scheduler.

Inputs: an image model takes `input` FP32 [B, 3, H, W] (already normalised, as Triton clients
send) or `image` BYTES [B] (image files: raw bytes in binary/gRPC data, base64 text in JSON);
a text model takes `text` BYTES [B] (UTF-8). [B, 1] is accepted for BYTES too, which is what a
Triton client reading the config's `dims: [1]` sends. Outputs, each [B] unless noted:
`probabilities` FP32 [B, n_classes], `class_index`, `action` (index into ACTIONS),
`iterations`, `layer_evaluations`, `macs` INT64, `converged` BOOL. Requested outputs are returned in
the order asked, all of them when none is asked for. Parameters: `action` forces an action;
`timeout` (µs, as Triton clients send it) can shorten the request's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.core import ServiceError
from service.inputs import EncodedText, PredictInput, validate_text
from service.oip.tensors import BYTES
from service.predict import classify
from service.repository import ServedModel, ServiceState
from service.scheduling import Completed

SERVER_NAME = "dynalay-serve"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ("binary_tensor_data", "model_configuration", "model_repository")

# name → datatype; `probabilities` is [B, n_classes], every other output [B]
OUTPUTS = {
    "probabilities": "FP32",
    "class_index": "INT64",
    "action": "INT64",
    "iterations": "INT64",
    "converged": "BOOL",
    "layer_evaluations": "INT64",
    "macs": "INT64",
}
_TRITON_TYPES = {
    "FP32": "TYPE_FP32",
    "INT64": "TYPE_INT64",
    "BOOL": "TYPE_BOOL",
    BYTES: "TYPE_STRING",
}


@dataclass(frozen=True)
class InferTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray  # decoded by service/oip/tensors.py; BYTES: object array of bytes or str


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None = None  # HTTP's binary_data parameter (None: not said)


@dataclass(frozen=True)
class InferenceRequest:
    model: str
    inputs: tuple[InferTensor, ...]
    outputs: tuple[RequestedOutput, ...] = ()  # empty: every output
    id: str | None = None
    version: str | None = None  # None or "": the one loaded
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray  # shape [B] or [B, n_classes]


@dataclass(frozen=True)
class InferenceAnswer:
    model: str
    version: str
    id: str | None
    outputs: tuple[OutputTensor, ...]


# ---- metadata ---------------------------------------------------------------------------------


def server_metadata() -> dict:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


def find_model(state: ServiceState, name: str, version: str | None = None) -> ServedModel:
    served = state.models.get(name)
    if served is None and name in state.failed:
        raise ServiceError(503, f"model {name[:64]!r} is not ready: {state.failed[name]}")
    if served is None:
        loaded = ", ".join(state.models) or "none"
        raise ServiceError(404, f"unknown model {name[:64]!r}; loaded: {loaded}")
    if version and version != served.meta.version:
        raise ServiceError(
            404, f"model {name!r} has no version {version[:64]!r}; loaded: {served.meta.version}"
        )
    return served


def input_specs(served: ServedModel) -> list[tuple[str, str, list[int]]]:
    """(name, datatype, shape with -1 for the batch) of each accepted input."""
    meta = served.meta
    if meta.modality == "text":
        return [("text", BYTES, [-1])]
    height, width = meta.preprocessing["image_size"]
    return [("input", "FP32", [-1, 3, int(height), int(width)]), ("image", BYTES, [-1])]


def output_shape(name: str, batch: int, n_classes: int) -> list[int]:
    return [batch, n_classes] if name == "probabilities" else [batch]


def model_metadata(served: ServedModel) -> dict:
    n_classes = len(served.meta.classes)
    return {
        "name": served.name,
        "versions": [served.meta.version],
        "platform": served.engine.name,
        "precision": served.engine.precision,  # an extension field: what the engine computes in
        "inputs": [
            {"name": n, "datatype": t, "shape": shape} for n, t, shape in input_specs(served)
        ],
        "outputs": [
            {"name": n, "datatype": t, "shape": output_shape(n, -1, n_classes)}
            for n, t in OUTPUTS.items()
        ],
    }


def model_config(served: ServedModel, state: ServiceState) -> dict:
    """The model as Triton's model configuration (what its clients and perf_analyzer read).

    With max_batch_size > 0, `dims` leave the batch dimension out; a per-sample scalar is
    `dims: [1]` reshaped to `[]`, i.e. the tensor is [B]. The image model's two inputs are
    alternatives, so each is optional.
    """
    settings, n_classes = state.settings, len(served.meta.classes)
    image_model = served.meta.modality == "image"
    inputs = []
    for name, datatype, shape in input_specs(served):
        spec: dict[str, Any] = {"name": name, "data_type": _TRITON_TYPES[datatype]}
        spec |= {"format": "FORMAT_NCHW"} if len(shape) == 4 else {}
        spec |= _per_sample_dims(shape[1:]) | ({"optional": True} if image_model else {})
        inputs.append(spec)
    outputs = [
        {"name": n, "data_type": _TRITON_TYPES[t]}
        | _per_sample_dims(output_shape(n, -1, n_classes)[1:])
        for n, t in OUTPUTS.items()
    ]
    return {
        "name": served.name,
        "platform": served.engine.name,
        "precision": served.engine.precision,  # an extension field: what the engine computes in
        "backend": "dynalay",
        "max_batch_size": settings.max_batch_size,
        "input": inputs,
        "output": outputs,
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(settings.max_queue_delay_ms * 1000),
            "default_queue_policy": {"max_queue_size": settings.max_queue},
        },
        "parameters": {"classes": {"string_value": ",".join(served.meta.classes)}},
    }


def _per_sample_dims(dims: list[int]) -> dict:
    return {"dims": dims} if dims else {"dims": [1], "reshape": {"shape": []}}


# ---- infer ------------------------------------------------------------------------------------


async def infer(
    state: ServiceState, served: ServedModel, request: InferenceRequest, deadline: float
) -> InferenceAnswer:
    """Validate, then `classify` every sample of the input tensor (decoded off the loop)."""
    deadline = _client_deadline(request.parameters, deadline)
    outputs = _requested_outputs(request.outputs)
    tensor = _the_input(served, request.inputs)
    batch = _batch_size(tensor)
    if batch > state.settings.max_batch_size:
        limit = state.settings.max_batch_size
        raise ServiceError(
            413,
            f"a batch of {batch} samples is larger than max_batch_size {limit} (see "
            f"/v2/models/{served.name}/config); send at most {limit} per request",
        )

    def prepare() -> list[np.ndarray]:
        return _samples(served, tensor, state)

    action = request.parameters.get("action")
    classified = await classify(served, prepare, action, deadline)
    return InferenceAnswer(
        served.name, served.meta.version, request.id, _output_tensors(classified.answers, outputs)
    )


def _client_deadline(parameters: Mapping[str, Any], deadline: float) -> float:
    """Triton's `timeout` parameter (µs) shortens the deadline; it never extends ours."""
    timeout_us = parameters.get("timeout")
    if timeout_us is None:
        return deadline
    if isinstance(timeout_us, bool) or not isinstance(timeout_us, int) or timeout_us <= 0:
        raise ServiceError(400, "parameter `timeout` must be a positive integer (microseconds)")
    return min(deadline, time.monotonic() + timeout_us / 1e6)


def _requested_outputs(requested: tuple[RequestedOutput, ...]) -> tuple[str, ...]:
    names = tuple(r.name for r in requested) or tuple(OUTPUTS)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise ServiceError(
            400, f"unknown output {unknown[0][:64]!r}; outputs: {', '.join(OUTPUTS)}"
        )
    if len(set(names)) != len(names):
        raise ServiceError(400, "an output is requested more than once")
    return names


def _the_input(served: ServedModel, inputs: tuple[InferTensor, ...]) -> InferTensor:
    specs = input_specs(served)
    accepted = " or ".join(f"`{n}` {t} {s}" for n, t, s in specs)
    if len(inputs) != 1:
        raise ServiceError(
            422, f"model {served.name!r} takes exactly one input ({accepted}), not {len(inputs)}"
        )
    tensor = inputs[0]
    if (tensor.name, tensor.datatype) not in {(n, t) for n, t, _ in specs}:
        raise ServiceError(
            422,
            f"model {served.name!r} takes {accepted}, not `{tensor.name[:64]}` "
            f"{tensor.datatype[:16]}",
        )
    return tensor


def _batch_size(tensor: InferTensor) -> int:
    shape = tensor.shape
    if tensor.datatype == BYTES:
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or shape[0] < 1:
            raise ServiceError(400, f"`{tensor.name}` must have shape [B] or [B, 1], B ≥ 1")
    elif not shape or shape[0] < 1:
        raise ServiceError(400, f"`{tensor.name}` needs a batch dimension of at least 1")
    return shape[0]


def _samples(served: ServedModel, tensor: InferTensor, state: ServiceState) -> list[np.ndarray]:
    """Blocking (decoding, tokenizing): the per-sample arrays the engine takes."""
    if tensor.datatype == BYTES:
        return [_one_bytes_sample(served, item, state) for item in tensor.data.reshape(-1)]
    spec = served.image_spec
    assert spec is not None
    expected = (3, spec.height, spec.width)
    if tensor.shape[1:] != expected:
        raise ServiceError(400, f"`input` must have shape [B, {', '.join(map(str, expected))}]")
    if not np.isfinite(tensor.data).all():
        raise ServiceError(400, "`input` holds NaN or infinite values")
    return list(np.ascontiguousarray(tensor.data, dtype=np.float32))


def _one_bytes_sample(served: ServedModel, item: bytes | str, state: ServiceState) -> np.ndarray:
    if served.meta.modality == "text":
        text = item if isinstance(item, str) else _utf8(item)
        validate_text(text, state.settings.max_text_bytes)
        prepared = served.preprocess(PredictInput("text", text=text), state.settings)
        assert isinstance(prepared, EncodedText)
        return prepared.ids
    # JSON carries base64 text (decoded like /predict's `image`); binary data the file itself.
    prepared = served.preprocess(PredictInput("image", image=item), state.settings)
    assert isinstance(prepared, np.ndarray)
    return prepared


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError(400, "a `text` element is not valid UTF-8") from None


def _output_tensors(done: list[Completed], names: tuple[str, ...]) -> tuple[OutputTensor, ...]:
    samples = [c.sample for c in done]
    columns = {
        "probabilities": lambda: np.asarray([s.probabilities for s in samples], np.float32),
        "class_index": lambda: np.asarray([s.class_index for s in samples], np.int64),
        "action": lambda: np.asarray([s.action for s in samples], np.int64),
        "iterations": lambda: np.asarray([s.iterations for s in samples], np.int64),
        "converged": lambda: np.asarray([s.converged for s in samples], np.bool_),
        "layer_evaluations": lambda: np.asarray([s.layer_evaluations for s in samples], np.int64),
        "macs": lambda: np.asarray([s.macs for s in samples], np.int64),
    }
    return tuple(OutputTensor(n, OUTPUTS[n], columns[n]()) for n in names)
