"""The KServe v2 / Triton gRPC inference service, on DYNALAY_GRPC_PORT next to HTTP.

It runs on the app's event loop (started and stopped by the lifespan, service/app/factory.py) and
serves the same `ServiceState`: ModelInfer goes through service/oip/inference.py into the same
micro-batchers as /predict and the HTTP infer route, with the same API key (gRPC metadata
`x-api-key` or `authorization: Bearer ...`), readiness, deadline (the server's, or the
client's gRPC deadline when sooner), size limits (a message is at most DYNALAY_MAX_BODY_BYTES)
and metrics (`dynalay_requests_total` under the HTTP status the gRPC code stands for, and
`dynalay_grpc_requests_total` by gRPC code). Answers carry their tensors in
`raw_output_contents`; requests may use either `raw_input_contents` or typed `contents`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from starlette.datastructures import Headers

from service.connection_guard import (
    ConnectionLimits,
    fit_file_limit,
    grpc_max_concurrent_rpcs,
    grpc_server_options,
)
from service.core import UNRESOLVED_MODEL, ServiceError
from service.oip.inference import (
    InferenceAnswer,
    InferenceRequest,
    InferTensor,
    RequestedOutput,
    find_model,
    infer,
    model_config,
    model_metadata,
    server_metadata,
)
from service.oip.protocol import SERVICE, SERVICE_NAME, message
from service.oip.tensors import BYTES, NUMERIC, from_raw, to_raw, volume
from service.predict import admit_headers, check_api_key
from service.repository import RepositoryControl, ServiceState

log = logging.getLogger(__name__)

# HTTP status of a ServiceError → the gRPC code a client sees (Google's canonical mapping).
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# datatype → the InferTensorContents field of its typed (non-raw) form
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]


class InferenceService:
    """The servicer: one coroutine per RPC of inference.proto."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        return message("ServerLiveResponse")(live=self.state.load_error is None)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        return message("ServerReadyResponse")(ready=self.state.ready)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        served = self.state.models.get(request.name)
        ok = self.state.ready and served is not None
        ok = ok and request.version in ("", served.meta.version)
        return message("ModelReadyResponse")(ready=ok)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        return json_format.ParseDict(server_metadata(), message("ServerMetadataResponse")())

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        served = await _or_abort(context, find_model, self.state, request.name, request.version)
        # The KServe v2 message has no field for the HTTP metadata's extensions (precision).
        metadata = message("ModelMetadataResponse")()
        return json_format.ParseDict(model_metadata(served), metadata, ignore_unknown_fields=True)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        served = await _or_abort(context, find_model, self.state, request.name, request.version)
        config = json_format.ParseDict(
            model_config(served, self.state), message("ModelConfig")(), ignore_unknown_fields=True
        )
        return message("ModelConfigResponse")(config=config)

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        started = time.perf_counter()
        model, status, code = UNRESOLVED_MODEL, 200, grpc.StatusCode.OK
        try:
            deadline = admit_headers(_headers(context), self.state)
            remaining = context.time_remaining()  # the client's deadline, None without one
            if remaining is not None:
                deadline = min(deadline, time.monotonic() + remaining)
            served = find_model(self.state, request.model_name, request.model_version)
            model = served.name
            answer = await infer(self.state, served, _inference_request(request), deadline)
            return _response(answer)
        except ServiceError as err:
            status, code = err.status, CODES.get(err.status, grpc.StatusCode.UNKNOWN)
            await _abort(context, code, err)
        except asyncio.CancelledError:  # the client cancelled or went away
            status, code = 499, grpc.StatusCode.CANCELLED
            raise
        except Exception:
            log.exception("unhandled error in gRPC ModelInfer")
            status, code = 500, grpc.StatusCode.INTERNAL
            await context.abort(code, "internal server error (details are in the server log)")
        finally:
            seconds = time.perf_counter() - started
            self.state.metrics.observe_grpc_answer(model, code.name, status, seconds)
        raise AssertionError("unreachable: abort raises")

    # The model repository extension, as over HTTP (service/oip/oip_repository.py).

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        control = await _or_abort(context, self._control, context)
        entry = message("RepositoryIndexResponse.ModelIndex")
        rows = control.index(ready_only=request.ready)
        return message("RepositoryIndexResponse")(models=[entry(**row) for row in rows])

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        control = await _or_abort(context, self._control, context)
        overrides = [k for k in request.parameters if k == "config" or k.startswith("file:")]
        if overrides:
            error = ServiceError(400, f"load parameters {overrides} are not supported")
            await _abort(context, CODES[400], error)
        await _or_abort_async(context, control.load, request.model_name)
        return message("RepositoryModelLoadResponse")()

    async def RepositoryModelUnload(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Message:
        control = await _or_abort(context, self._control, context)
        await _or_abort_async(context, control.unload, request.model_name)
        return message("RepositoryModelUnloadResponse")()

    def _control(self, context: grpc.aio.ServicerContext) -> RepositoryControl:
        key = self.state.settings.api_key
        check_api_key(_headers(context), key.get_secret_value() if key else None)
        if self.state.control is None:
            raise ServiceError(503, "the model repository is not open yet")
        return self.state.control


class GrpcServer:
    """A grpc.aio server bound to host:port, serving InferenceService on the current loop."""

    def __init__(self, state: ServiceState) -> None:
        settings = state.settings
        self.address = _address(settings.host, settings.grpc_port)
        # Heads, deadlines and connections as over HTTP (fitted to the open-file limit alike).
        limits = fit_file_limit(ConnectionLimits.from_settings(settings))
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.so_reuseport", 0),  # a second server on the port must fail, not share
                *grpc_server_options(limits),
            ],
            maximum_concurrent_rpcs=grpc_max_concurrent_rpcs(limits),
        )
        self._server.add_generic_rpc_handlers([_handlers(InferenceService(state))])
        if self._server.add_insecure_port(self.address) == 0:
            raise OSError(f"cannot listen for gRPC on {self.address}")

    async def start(self) -> None:
        await self._server.start()
        log.info("gRPC inference service on %s", self.address)

    async def stop(self, grace_s: float) -> None:
        """New calls are refused at once; calls in flight get `grace_s` to finish."""
        await self._server.stop(grace_s)


class _Undecodable:
    """What a request that is not a valid message decodes to (answered INVALID_ARGUMENT)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name


def _handlers(service: InferenceService) -> grpc.GenericRpcHandler:
    handlers = {}
    for method in SERVICE.methods:
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _refusing_undecodable(getattr(service, method.name)),
            request_deserializer=_lenient(message(method.input_type.name)),
            response_serializer=lambda response: response.SerializeToString(),
        )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def _lenient(request_type: type[Message]) -> Callable[[bytes], Any]:
    # grpc answers INTERNAL when a deserializer raises; bad bytes are the client's error.
    def parse(data: bytes) -> Any:
        try:
            return request_type.FromString(data)
        except DecodeError:
            return _Undecodable(request_type.DESCRIPTOR.name)

    return parse


def _refusing_undecodable(handler: Handler) -> Handler:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Message:
        if isinstance(request, _Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid inference.{request.type_name} message",
            )
        return await handler(request, context)

    return handle


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _headers(context: grpc.aio.ServicerContext) -> Headers:
    metadata = context.invocation_metadata() or ()
    return Headers(raw=[(k.encode("latin-1"), _text(v).encode("latin-1")) for k, v in metadata])


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


async def _or_abort(context: grpc.aio.ServicerContext, lookup: Callable, *args: Any) -> Any:
    try:
        return lookup(*args)
    except ServiceError as err:
        await _abort(context, CODES.get(err.status, grpc.StatusCode.UNKNOWN), err)


async def _or_abort_async(
    context: grpc.aio.ServicerContext, call: Callable[..., Awaitable[Any]], *args: Any
) -> Any:
    try:
        return await call(*args)
    except ServiceError as err:
        await _abort(context, CODES.get(err.status, grpc.StatusCode.UNKNOWN), err)


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, err: ServiceError):
    retry_after = err.headers.get("Retry-After")
    if retry_after is not None:
        context.set_trailing_metadata((("retry-after", retry_after),))
    await context.abort(code, err.message)


# ---- messages ↔ the protocol-neutral request and answer ---------------------------------------


def _inference_request(request: Any) -> InferenceRequest:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ServiceError(
            400, f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; send one each"
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        shape = tuple(int(d) for d in tensor.shape)
        if raw:
            data = from_raw(tensor.name, tensor.datatype, shape, raw[index])
        else:
            data = _from_contents(tensor, shape)
        inputs.append(InferTensor(tensor.name, tensor.datatype, shape, data))
    outputs = []
    for output in request.outputs:
        if "classification" in output.parameters:
            raise ServiceError(
                400, "the classification extension is not supported; request `probabilities`"
            )
        outputs.append(RequestedOutput(output.name))
    return InferenceRequest(
        model=request.model_name,
        version=request.model_version or None,
        id=request.id or None,
        parameters={k: _parameter(v) for k, v in request.parameters.items()},
        inputs=tuple(inputs),
        outputs=tuple(outputs),
    )


def _from_contents(tensor: Any, shape: tuple[int, ...]) -> np.ndarray:
    field = CONTENTS_FIELDS.get(tensor.datatype)
    if field is None:
        known = ", ".join(CONTENTS_FIELDS)
        raise ServiceError(
            400,
            f"tensor `{tensor.name}`: {tensor.datatype[:16]!r} data must come in "
            f"raw_input_contents; typed contents exist for {known}",
        )
    values = list(getattr(tensor.contents, field))
    count = volume(tensor.name, shape)
    if count == 0 and not values:
        return np.zeros(
            shape, dtype=object if tensor.datatype == BYTES else NUMERIC[tensor.datatype]
        )
    if len(values) != count:
        raise ServiceError(
            400,
            f"tensor `{tensor.name}` has {len(values)} {field}; shape {list(shape)} needs {count}",
        )
    if tensor.datatype == BYTES:
        array = np.empty(count, dtype=object)
        array[:] = values
        return array
    dtype = NUMERIC[tensor.datatype]
    try:
        return np.asarray(values).astype(dtype, casting="same_kind").reshape(shape)
    except TypeError:
        raise ServiceError(
            400, f"tensor `{tensor.name}`: a value does not fit {tensor.datatype}"
        ) from None


def _parameter(value: Any) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


def _response(answer: InferenceAnswer) -> Message:
    response = message("ModelInferResponse")(
        model_name=answer.model, model_version=answer.version, id=answer.id or ""
    )
    for output in answer.outputs:
        response.outputs.add(name=output.name, datatype=output.datatype, shape=output.data.shape)
        response.raw_output_contents.append(to_raw(output.data, output.datatype))
    return response
