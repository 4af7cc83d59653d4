"""The optional API key guards /predict; health, readiness and metrics stay open."""

from __future__ import annotations

import pytest

from service.app import create_app
from tests.service.helpers import CIFAR_PNGS, serving, settings_for, write_cnn_checkpoint

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_cnn_checkpoint(root)
    with serving(create_app(settings_for(root, api_key=KEY))) as test_client:
        yield test_client


def post(client, headers: dict):
    files = {"file": ("x.png", CIFAR_PNGS[0].read_bytes(), "image/png")}
    return client.post("/predict", files=files, headers=headers)


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
     {"X-API-Key": "sécret".encode()}, {"Authorization": "Basic czNjcmV0"}],
)  # fmt: skip
def test_missing_or_wrong_key_is_401(client, headers):
    r = post(client, headers)
    assert r.status_code == 401
    assert set(r.json()) == {"error"} and "API key" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}])
def test_right_key_is_accepted(client, headers):
    assert post(client, headers).status_code == 200


def test_health_readiness_and_metrics_stay_open(client):
    for path in ("/healthz", "/readyz", "/metrics", "/models"):
        assert client.get(path).status_code == 200, path
