"""NVIDIA's own `tritonclient.http` against a real server: the Open Inference Protocol unchanged.

Every answer is compared with the model's direct output or with /predict on the same input:
binary and JSON FP32 tensors, binary BYTES images and texts, requested outputs, compression,
server/model metadata and Triton's model configuration.
"""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from model.actions import ACTIONS
from model.checkpoint import load_checkpoint
from service.app import create_app
from tests.service.helpers import (
    CIFAR_CLASSES,
    CIFAR_PNGS,
    reference_input,
    serving_on_loopback,
    settings_for,
    write_cnn_checkpoint,
    write_text_checkpoint,
)

MAX_BATCH = 8
TEXTS = ("a wonderful film with a great cast", "boring story and weak acting", "great")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_cnn_checkpoint(root)
    write_text_checkpoint(root, max_length=16)
    return root


@pytest.fixture(scope="module")
def base(repo):
    app = create_app(settings_for(repo, max_batch_size=MAX_BATCH))
    with serving_on_loopback(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(base):
    triton = httpclient.InferenceServerClient(base.removeprefix("http://"))
    yield triton
    triton.close()


def predict(base: str, **body) -> dict:
    answer = httpx.post(f"{base}/predict", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def fp32_images(n: int) -> np.ndarray:
    return torch.cat([reference_input(p) for p in CIFAR_PNGS[:n]]).numpy()  # (n, 3, 32, 32)


def test_server_and_model_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cifar10") and not client.is_model_ready("nope")
    server = client.get_server_metadata()
    assert server["name"] == "dynalay-serve"
    assert {"binary_tensor_data", "model_configuration"} <= set(server["extensions"])
    meta = client.get_model_metadata("cifar10")
    assert meta["versions"] == ["test-1"]
    assert {"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]} in meta["inputs"]
    assert client.get_model_metadata("imdb", model_version="text-1")["name"] == "imdb"
    with pytest.raises(InferenceServerException, match="no version"):
        client.get_model_metadata("imdb", model_version="9")


def test_model_config_says_max_batch_size(client):
    config = client.get_model_config("cifar10")
    assert config["max_batch_size"] == MAX_BATCH
    inputs = {i["name"]: i for i in config["input"]}
    assert inputs["input"]["data_type"] == "TYPE_FP32" and inputs["input"]["dims"] == [3, 32, 32]
    assert inputs["image"]["data_type"] == "TYPE_STRING"
    outputs = {o["name"]: o for o in config["output"]}
    assert outputs["probabilities"]["dims"] == [10]
    assert outputs["class_index"] == {
        "name": "class_index", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}
    }  # fmt: skip


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_tensors_answer_like_the_model(client, repo, binary):
    x = fp32_images(3)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in
               ("probabilities", "class_index", "action", "iterations", "converged")]  # fmt: skip
    result = client.infer("cifar10", [tensor], outputs=outputs, request_id="r-1")
    with torch.inference_mode():
        direct = load_checkpoint(repo / "cifar10").net(torch.from_numpy(x))
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), direct.logits.softmax(1).numpy(), atol=1e-5
    )
    assert result.as_numpy("class_index").tolist() == direct.logits.argmax(1).tolist()
    assert result.as_numpy("action").tolist() == direct.actions.tolist()
    assert result.as_numpy("iterations").tolist() == direct.iterations.tolist()
    assert result.as_numpy("converged").dtype == np.bool_
    assert result.get_response()["id"] == "r-1"


def test_binary_bytes_images_answer_like_predict(client, base):
    pngs = [p.read_bytes() for p in CIFAR_PNGS]
    for action in (None, "loop_all"):
        tensor = httpclient.InferInput("image", [len(pngs)], "BYTES")
        tensor.set_data_from_numpy(np.array(pngs, dtype=np.object_))  # the files, raw
        parameters = {"action": action} if action else None
        result = client.infer("cifar10", [tensor], parameters=parameters)
        for i, png in enumerate(pngs):
            body = {"image": base64.b64encode(png).decode()} | (
                {"action": action} if action else {}
            )
            want = predict(base, **body)
            assert result.as_numpy("class_index")[i] == want["class_index"]
            assert ACTIONS[result.as_numpy("action")[i]] == want["action"]
            assert result.as_numpy("iterations")[i] == want["iterations"]
            assert result.as_numpy("layer_evaluations")[i] == want["layer_evaluations"]
            got = result.as_numpy("probabilities")[i]
            for label, p in want["probabilities"].items():
                assert abs(got[CIFAR_CLASSES.index(label)] - p) <= 1e-6


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_bytes_texts_answer_like_predict(client, base, binary):
    tensor = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in TEXTS], np.object_), binary)
    result = client.infer("imdb", [tensor])
    for i, text in enumerate(TEXTS):
        want = predict(base, text=text, model="imdb")
        assert result.as_numpy("class_index")[i] == want["class_index"]
        probabilities = result.as_numpy("probabilities")[i]
        assert abs(probabilities[1] - want["probabilities"]["positive"]) <= 1e-6


def test_requested_outputs_only_and_in_order(client):
    x = fp32_images(2)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    outputs = [
        httpclient.InferRequestedOutput("action", binary_data=False),
        httpclient.InferRequestedOutput("class_index", binary_data=True),
    ]
    result = client.infer("cifar10", [tensor], outputs=outputs)
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["action", "class_index"]
    assert "data" in response["outputs"][0] and "data" not in response["outputs"][1]
    assert result.as_numpy("probabilities") is None
    assert result.as_numpy("class_index").shape == (2,)


def test_gzip_requests_and_deflate_requests(client):
    x = fp32_images(2)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    plain = client.infer("cifar10", [tensor]).as_numpy("probabilities")
    for algorithm in ("gzip", "deflate"):
        result = client.infer("cifar10", [tensor], request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("probabilities"), plain)


def test_a_batch_over_max_batch_size_is_refused_naming_the_limit(client):
    x = np.zeros((MAX_BATCH + 1, 3, 32, 32), np.float32)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match=f"max_batch_size {MAX_BATCH}") as err:
        client.infer("cifar10", [tensor])
    assert err.value.status() == "413"


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"inputs":[{"name":"input","shape":[1,3,32,32],"datatype":"FP32",'
         b'"parameters":{"binary_data_size":12288}}]}' + b"\0" * 100, {}, 400),  # short data
        (b'{"inputs":[]}', {"Inference-Header-Content-Length": "999"}, 400),
        (b'{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES",'
         b'"parameters":{"binary_data_size":8}}]}\xff\xff\xff\x00abcd', {}, 400),
        (b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}, 400),
        (b"{}", {"Content-Encoding": "br"}, 415),
    ],
)  # fmt: skip
def test_malformed_binary_requests_are_4xx(base, body, headers, status):
    if "Inference-Header-Content-Length" not in headers and b"binary_data_size" in body:
        headers = {"Inference-Header-Content-Length": str(body.index(b"}]}") + 3)}
    answer = httpx.post(f"{base}/v2/models/cifar10/infer", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"}
