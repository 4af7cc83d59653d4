"""The Open Inference Protocol routes answer like the model, and like /predict."""

from __future__ import annotations

import base64

import pytest
import torch

from model.actions import ACTIONS
from model.checkpoint import load_checkpoint
from service.app import create_app
from tests.service.helpers import (
    CIFAR_PNGS,
    reference_input,
    serving,
    settings_for,
    write_cnn_checkpoint,
    write_text_checkpoint,
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_cnn_checkpoint(root)
    write_text_checkpoint(root)
    return root


@pytest.fixture(scope="module")
def client(repo):
    with serving(create_app(settings_for(repo))) as test_client:
        yield test_client


def outputs(response) -> dict:
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def test_health_and_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/cifar10/ready").status_code == 200
    meta = client.get("/v2/models/cifar10").json()
    assert meta["name"] == "cifar10" and meta["versions"] == ["test-1"]
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}
    assert [o["name"] for o in meta["outputs"]][:3] == ["probabilities", "class_index", "action"]
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/v2/models/nope/ready").status_code == 503


def test_fp32_tensor_infer_equals_the_model(client, repo):
    x = torch.cat([reference_input(p) for p in CIFAR_PNGS[:3]])  # (3, 3, 32, 32)
    body = {
        "id": "req-1",
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                    "data": x.flatten().tolist()}],
    }  # fmt: skip
    r = client.post("/v2/models/cifar10/infer", json=body)
    out = outputs(r)
    assert r.json()["id"] == "req-1" and r.json()["model_version"] == "test-1"
    with torch.inference_mode():
        direct = load_checkpoint(repo / "cifar10").net(x)
    assert out["probabilities"]["shape"] == [3, 10]
    got = torch.tensor(out["probabilities"]["data"]).reshape(3, 10)
    torch.testing.assert_close(got, direct.logits.softmax(dim=1), atol=1e-5, rtol=0)
    assert out["class_index"]["data"] == direct.logits.argmax(dim=1).tolist()
    assert out["action"]["data"] == direct.actions.tolist()
    assert out["iterations"]["data"] == direct.iterations.tolist()


def test_bytes_image_infer_matches_predict_and_forces_actions(client):
    png = CIFAR_PNGS[4].read_bytes()
    body = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                    "data": [base64.b64encode(png).decode()]}],
        "parameters": {"action": "loop_all"},
    }  # fmt: skip
    out = outputs(client.post("/v2/models/cifar10/infer", json=body))
    answer = client.post(
        "/predict", files={"file": ("x.png", png)}, data={"action": "loop_all"}
    ).json()
    assert ACTIONS[out["action"]["data"][0]] == "loop_all" == answer["action"]
    assert out["class_index"]["data"] == [answer["class_index"]]
    assert out["iterations"]["data"] == [answer["iterations"]]


def test_text_infer(client):
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                        "data": ["a wonderful film", "boring"]}]}  # fmt: skip
    out = outputs(client.post("/v2/models/imdb/infer", json=body))
    assert out["probabilities"]["shape"] == [2, 2]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32",
                      "data": [0.0] * 192}]}, 400),
        ({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                      "data": [0.0] * 5}]}, 400),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}, 422),
        ({"inputs": []}, 422),
        ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [1]}]}, 422),
        ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["!!"]}]}, 400),
        ({"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}, 400),
        ({"parameters": {"action": "fly"}, "inputs": [
            {"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
             "data": [0.0] * 3072}]}, 422),
    ],
)  # fmt: skip
def test_bad_infer_requests_are_4xx(client, body, status):
    r = client.post("/v2/models/cifar10/infer", json=body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}


def test_infer_errors_and_answers_are_counted(client):
    assert client.post("/v2/models/nope/infer", json={}).status_code == 404
    bad = client.post("/v2/models/cifar10/infer", content=b"{", headers={"content-type": "x"})
    assert bad.status_code == 400
    metrics = client.get("/metrics").text
    assert 'dynalay_requests_total{model="none",status="404"}' in metrics
    assert 'dynalay_requests_total{model="cifar10",status="400"}' in metrics
