"""Hostile gRPC calls get a clean client-error code (never INTERNAL/UNKNOWN, never a hang), and
the service goes on answering: a hand-made corpus, then bounded random ModelInfer messages."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.oip import message
from tests.fixtures.hostile.make_corpus import BODY_LIMIT, MAX_BATCH, REAL_PNG, png_claiming
from tests.reliability import figures
from tests.service.helpers import free_port, serving_on_loopback, settings_for

CALL_TIMEOUT_S = 10.0
CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # grpc's own message size limit
}
DATATYPES = ["FP32", "FP16", "FP64", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "X"]
INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def address(two_model_repo) -> Iterator[str]:
    port = free_port()
    app = create_app(
        settings_for(two_model_repo, max_body_bytes=BODY_LIMIT, max_batch_size=MAX_BATCH,
                     grpc_port=port)
    )  # fmt: skip
    with serving_on_loopback(app):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def infer(address):
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            INFER,
            request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
            response_deserializer=message("ModelInferResponse").FromString,
        )
        yield lambda request: call(request, timeout=CALL_TIMEOUT_S)


def strings(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def request(model: str = "cifar10", raw: list[bytes] | None = None, **tensor) -> object:
    built = message("ModelInferRequest")(model_name=model)
    built.inputs.add(**tensor)
    built.raw_input_contents.extend(raw or [])
    return built


def hostile() -> dict[str, object]:
    zeros = np.zeros((1, 3, 32, 32), np.float32).tobytes()
    nan = np.full((1, 3, 32, 32), np.nan, np.float32).tobytes()
    fp32 = {"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32]}
    image = {"name": "image", "datatype": "BYTES", "shape": [1]}
    text = {"name": "text", "datatype": "BYTES", "shape": [1]}
    two_raw = request(raw=[zeros, zeros], **fp32)
    return {
        "not a protobuf message": b"\xff\xff\xff\xff garbage",
        "no model name": message("ModelInferRequest")(),
        "unknown model": request("nope", [zeros], **fp32),
        "no inputs": message("ModelInferRequest")(model_name="cifar10"),
        "raw data for two inputs, one input": two_raw,
        "short raw data": request(raw=[zeros[:100]], **fp32),
        "negative shape": request(raw=[zeros], **(fp32 | {"shape": [-1, 3, 32, 32]})),
        "huge shape": request(raw=[zeros], name="input", datatype="FP32", shape=[2**62, 2**62]),
        "unknown datatype": request(raw=[zeros], name="input", datatype="FP8", shape=[1]),
        "FP16 as typed contents": request(name="input", datatype="FP16", shape=[1]),
        "NaN image": request(raw=[nan], **fp32),
        "BYTES length past the end": request(raw=[struct.pack("<I", 10**6)], **image),
        "BYTES not an image": request(raw=[strings(b"abcd")], **image),
        "BYTES bomb": request(raw=[strings(png_claiming(10**5, 10**5))], **image),
        "too many samples": request(
            raw=[strings(*[REAL_PNG] * (MAX_BATCH + 1))],
            name="image", datatype="BYTES", shape=[MAX_BATCH + 1],
        ),
        "text not UTF-8": request("imdb", [strings(b"\xff\xfe")], **text),
        "text of control characters": request("imdb", [strings(b"\0\0")], **text),
        "text to the image model": request("cifar10", [strings(b"hello")], **text),
        "over the message limit": request(raw=[b"\0" * (BODY_LIMIT + 1)], **fp32),
        "classification asked": _with_output(request(raw=[zeros], **fp32), "probabilities"),
        "unknown output": _with_output(request(raw=[zeros], **fp32), "secret"),
    }  # fmt: skip


def _with_output(built, name: str):
    output = built.outputs.add(name=name)
    if name == "probabilities":
        output.parameters["classification"].int64_param = 3
    return built


def test_hostile_calls_get_client_error_codes(infer):
    failures = []
    for name, built in hostile().items():
        try:
            infer(built)
            failures.append(f"{name}: answered OK")
        except grpc.RpcError as err:
            if err.code() not in CLIENT_ERRORS:
                failures.append(f"{name}: {err.code()} {err.details()[:120]!r}")
    figures.add("hostile gRPC calls", len(hostile()))
    assert not failures, "\n".join(failures)
    assert _good_call_works(infer)


@st.composite
def random_requests(draw) -> object:
    built = message("ModelInferRequest")(
        model_name=draw(st.sampled_from(["cifar10", "imdb", "", "nope"])),
        id=draw(st.text(max_size=8)),
    )
    for _ in range(draw(st.integers(0, 2))):
        built.inputs.add(
            name=draw(st.sampled_from(["input", "image", "text", "", "x"])),
            datatype=draw(st.sampled_from(DATATYPES)),
            shape=draw(st.lists(st.integers(-2, 40), max_size=5)),
        )
    for _ in range(draw(st.integers(0, 2))):
        built.raw_input_contents.append(draw(st.binary(max_size=4096)))
    if draw(st.booleans()):
        built.parameters["action"].string_param = draw(st.sampled_from(["loop_all", "x", ""]))
    return built


def test_random_infer_messages_never_fail_the_server(infer):
    @given(built=random_requests())
    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(built) -> None:
        figures.add("random gRPC calls", 1)
        try:
            infer(built)
        except grpc.RpcError as err:
            assert err.code() in CLIENT_ERRORS, (err.code(), err.details()[:200])

    check()
    assert _good_call_works(infer)


def _good_call_works(infer) -> bool:
    good = request(raw=[strings(REAL_PNG)], name="image", datatype="BYTES", shape=[1])
    answer = infer(good)
    return answer.outputs[0].name == "probabilities"
