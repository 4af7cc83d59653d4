"""POST /predict answers what the model itself computes for the same image."""

from __future__ import annotations

import base64

import pytest
import torch

from model.actions import ACTIONS, looped_layers
from model.checkpoint import load_checkpoint
from tests.service.helpers import CIFAR_CLASSES, CIFAR_PNGS, reference_input

FIELDS = {
    "model", "model_version", "label", "class_index", "probabilities", "action", "looped_layers",
    "iterations", "converged", "layer_evaluations", "macs", "latency_ms", "batch_size",
}  # fmt: skip


def direct(model_dir, path, action: str | None = None):
    """The model's own output for one PNG: (probabilities (C,), ForwardOutput)."""
    net = load_checkpoint(model_dir / "cifar10").net
    forced = None if action is None else torch.tensor([ACTIONS.index(action)])
    with torch.inference_mode():
        out = net(reference_input(path), forced)
    return out.logits.softmax(dim=1)[0], out


def assert_matches(answer: dict, probs: torch.Tensor, out) -> None:
    index = int(out.logits.argmax(dim=1))
    action = int(out.actions[0])
    assert answer["class_index"] == index
    assert answer["label"] == CIFAR_CLASSES[index]
    assert answer["action"] == ACTIONS[action]
    assert answer["looped_layers"] == list(looped_layers(action))
    assert answer["iterations"] == int(out.iterations[0])
    assert answer["converged"] == bool(out.converged[0])
    assert answer["layer_evaluations"] == int(out.layer_evaluations[0])
    assert answer["macs"] == int(out.macs[0])
    assert len(answer["probabilities"]) == 5
    assert list(answer["probabilities"].values()) == sorted(
        answer["probabilities"].values(), reverse=True
    )
    for label, p in answer["probabilities"].items():
        assert p == pytest.approx(float(probs[CIFAR_CLASSES.index(label)]), abs=1e-5)


@pytest.mark.parametrize("path", CIFAR_PNGS[:3], ids=lambda p: p.stem)
def test_multipart_answer_equals_the_model(client, model_dir, path):
    r = client.post("/predict", files={"file": (path.name, path.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == FIELDS
    assert answer["model"] == "cifar10" and answer["model_version"] == "test-1"
    assert answer["latency_ms"] > 0
    assert_matches(answer, *direct(model_dir, path))


@pytest.mark.parametrize("action", ACTIONS)
def test_json_base64_with_forced_action_equals_the_model(client, model_dir, action):
    path = CIFAR_PNGS[1]
    body = {"image": base64.b64encode(path.read_bytes()).decode(), "action": action}
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    assert_matches(r.json(), *direct(model_dir, path, action))
    if looped_layers(ACTIONS.index(action)):
        assert r.json()["iterations"] > 0


def test_multipart_model_and_action_fields(client, model_dir):
    path = CIFAR_PNGS[2]
    r = client.post(
        "/predict",
        files={"file": ("x.png", path.read_bytes(), "image/png")},
        data={"model": "cifar10", "action": "loop_l1"},
    )
    assert r.status_code == 200, r.text
    assert_matches(r.json(), *direct(model_dir, path, "loop_l1"))


def test_data_url_is_accepted(client):
    data = base64.b64encode(CIFAR_PNGS[0].read_bytes()).decode()
    r = client.post("/predict", json={"image": f"data:image/png;base64,{data}"})
    assert r.status_code == 200, r.text


def test_health_ready_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "models": ["cifar10"]}
    (info,) = client.get("/models").json()["models"]
    assert info["name"] == "cifar10" and info["version"] == "test-1"
    assert info["modality"] == "image" and info["engine"] == "torch" and info["device"] == "cpu"
    assert info["classes"] == list(CIFAR_CLASSES)


def test_openapi_documents_predict(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
