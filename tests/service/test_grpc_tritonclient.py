"""NVIDIA's `tritonclient.grpc` against the gRPC inference service of a real server.

The gRPC service shares the HTTP app's state: answers are compared with the model's direct
output and with /predict on the same inputs, a gRPC call and an HTTP request land in one
batch, and limits, API key and metrics hold as over HTTP.
"""

from __future__ import annotations

import base64
import concurrent.futures

import grpc
import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from model.actions import ACTIONS
from model.checkpoint import load_checkpoint
from service.app import create_app
from service.oip import message
from tests.service.helpers import (
    CIFAR_PNGS,
    free_port,
    reference_input,
    serving_on_loopback,
    settings_for,
    write_cnn_checkpoint,
    write_text_checkpoint,
)

MAX_BATCH = 8
KEY = "grpc-secret"
TEXTS = ("a wonderful film with a great cast", "boring story and weak acting")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_cnn_checkpoint(root)
    write_text_checkpoint(root, max_length=16)
    return root


@pytest.fixture(scope="module")
def server(repo):
    """(HTTP base URL, gRPC address) of one server, API key required for predictions."""
    port = free_port()
    settings = settings_for(repo, max_batch_size=MAX_BATCH, grpc_port=port, api_key=KEY)
    with serving_on_loopback(create_app(settings)) as base:
        yield base, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def client(server):
    triton = grpcclient.InferenceServerClient(server[1])
    yield triton
    triton.close()


AUTH = {"x-api-key": KEY}


def predict(base: str, **body) -> dict:
    answer = httpx.post(f"{base}/predict", json=body, headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def fp32_input(n: int) -> tuple[np.ndarray, grpcclient.InferInput]:
    x = torch.cat([reference_input(p) for p in CIFAR_PNGS[:n]]).numpy()
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return x, tensor


def test_health_metadata_and_config(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("imdb") and not client.is_model_ready("nope")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "dynalay-serve" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("cifar10", as_json=True)
    assert meta["versions"] == ["test-1"]
    assert {"name": "input", "datatype": "FP32", "shape": ["-1", "3", "32", "32"]} in meta["inputs"]
    config = client.get_model_config("cifar10", as_json=True)["config"]
    assert int(config["max_batch_size"]) == MAX_BATCH
    assert {o["name"] for o in config["output"]} >= {"probabilities", "class_index", "action"}
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("nope")


def test_fp32_infer_answers_like_the_model(client, repo):
    x, tensor = fp32_input(3)
    result = client.infer("cifar10", [tensor], request_id="g-1", headers=AUTH)
    with torch.inference_mode():
        direct = load_checkpoint(repo / "cifar10").net(torch.from_numpy(x))
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), direct.logits.softmax(1).numpy(), atol=1e-5
    )
    assert result.as_numpy("class_index").tolist() == direct.logits.argmax(1).tolist()
    assert result.as_numpy("action").tolist() == direct.actions.tolist()
    assert result.as_numpy("converged").dtype == np.bool_
    assert result.get_response().id == "g-1"


def test_bytes_images_and_texts_answer_like_predict(client, server):
    base = server[0]
    pngs = [p.read_bytes() for p in CIFAR_PNGS]
    tensor = grpcclient.InferInput("image", [len(pngs)], "BYTES")
    tensor.set_data_from_numpy(np.array(pngs, dtype=np.object_))
    result = client.infer("cifar10", [tensor], parameters={"action": "loop_l1"}, headers=AUTH)
    for i, png in enumerate(pngs):
        want = predict(base, image=base64.b64encode(png).decode(), action="loop_l1")
        assert result.as_numpy("class_index")[i] == want["class_index"]
        assert ACTIONS[result.as_numpy("action")[i]] == want["action"] == "loop_l1"
        assert result.as_numpy("iterations")[i] == want["iterations"]
    texts = grpcclient.InferInput("text", [len(TEXTS)], "BYTES")
    texts.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_))
    outputs = [grpcclient.InferRequestedOutput("probabilities")]
    result = client.infer("imdb", [texts], outputs=outputs, headers=AUTH)
    assert [o.name for o in result.get_response().outputs] == ["probabilities"]
    for i, text in enumerate(TEXTS):
        want = predict(base, text=text, model="imdb")["probabilities"]["positive"]
        assert abs(result.as_numpy("probabilities")[i][1] - want) <= 1e-6


def test_typed_contents_are_accepted_too(server):
    """A KServe client may send `contents` instead of raw bytes: same answer."""
    x, tensor = fp32_input(2)
    request = message("ModelInferRequest")(model_name="cifar10")
    entry = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    entry.contents.fp32_contents.extend(x.reshape(-1).tolist())
    with grpc.insecure_channel(server[1]) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message("ModelInferResponse").FromString,
        )
        typed = call(request, metadata=tuple(AUTH.items()), timeout=30)
    raw = grpcclient.InferenceServerClient(server[1]).infer("cifar10", [tensor], headers=AUTH)
    index = [o.name for o in typed.outputs].index("probabilities")
    got = np.frombuffer(typed.raw_output_contents[index], np.float32).reshape(2, 10)
    np.testing.assert_array_equal(got, raw.as_numpy("probabilities"))


def test_limits_key_and_errors_are_the_https(client, server):
    _, tensor = fp32_input(1)
    with pytest.raises(InferenceServerException, match="API key") as err:
        client.infer("cifar10", [tensor])
    assert "UNAUTHENTICATED" in err.value.status()
    big = grpcclient.InferInput("input", [MAX_BATCH + 1, 3, 32, 32], "FP32")
    big.set_data_from_numpy(np.zeros((MAX_BATCH + 1, 3, 32, 32), np.float32))
    with pytest.raises(InferenceServerException, match=f"max_batch_size {MAX_BATCH}") as err:
        client.infer("cifar10", [big], headers=AUTH)
    assert "INVALID_ARGUMENT" in err.value.status()
    with pytest.raises(InferenceServerException, match="unknown action"):
        client.infer("cifar10", [tensor], parameters={"action": "fly"}, headers=AUTH)
    with pytest.raises(InferenceServerException, match="unknown model") as err:
        client.infer("nope", [tensor], headers=AUTH)
    assert "NOT_FOUND" in err.value.status()
    short = grpcclient.InferInput("input", [1, 3, 32, 32], "FP32")
    short._raw_content = b"\0" * 100  # a client bug: fewer bytes than the shape needs
    with pytest.raises(InferenceServerException, match="needs 12288"):
        client.infer("cifar10", [short], headers=AUTH)
    with pytest.raises(InferenceServerException) as err:  # the client's deadline, or ours
        client.infer("cifar10", [tensor], headers=AUTH, client_timeout=1e-6)
    assert "DEADLINE_EXCEEDED" in err.value.status()
    metrics = httpx.get(f"{server[0]}/metrics").text
    assert 'dynalay_grpc_requests_total{code="OK",model="cifar10"}' in metrics
    assert 'dynalay_grpc_requests_total{code="UNAUTHENTICATED",model="none"} 1.0' in metrics
    assert 'dynalay_grpc_requests_total{code="INVALID_ARGUMENT",model="cifar10"}' in metrics
    assert 'dynalay_requests_total{model="none",status="401"}' in metrics


def test_grpc_and_http_requests_share_one_batch(repo):
    """One batcher per model, whatever the protocol: the two requests close one batch of 2."""
    port = free_port()
    settings = settings_for(repo, max_batch_size=2, max_queue_delay_ms=2000.0, grpc_port=port)
    png = CIFAR_PNGS[0].read_bytes()
    with serving_on_loopback(create_app(settings)) as base:
        triton = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = grpcclient.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([png], dtype=np.object_))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            grpc_call = pool.submit(triton.infer, "cifar10", [tensor])
            http_call = pool.submit(
                httpx.post, f"{base}/predict", files={"file": ("x.png", png)}, timeout=30
            )
            answer = http_call.result(timeout=30).json()
            result = grpc_call.result(timeout=30)
        triton.close()
    assert answer["batch_size"] == 2  # well before the 2 s batching window ran out
    assert result.as_numpy("class_index")[0] == answer["class_index"]
