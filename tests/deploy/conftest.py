"""Fixtures for the deploy checks: a tiny real checkpoint and the real service app."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.deploy.deploy_helpers import (
    CIFAR_CLASSES,
    CIFAR_MEAN,
    CIFAR_STD,
    READY_TIMEOUT_S,
    TINY_MODEL,
    fixture_images,
    import_service_app,
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model repository holding one tiny random CNN checkpoint (CIFAR-shaped, width 8)."""
    from model.checkpoint import save_checkpoint
    from model.config import ModelConfig
    from model.network import build_model

    repo = tmp_path_factory.mktemp("models")
    save_checkpoint(
        repo / TINY_MODEL,
        build_model(ModelConfig(arch="cnn", n_classes=10, width=8)),
        name=TINY_MODEL,
        version="test",
        classes=CIFAR_CLASSES,
        preprocessing={
            "kind": "image", "image_size": [32, 32], "mean": CIFAR_MEAN, "std": CIFAR_STD,
        },
    )  # fmt: skip
    return repo


@pytest.fixture(scope="session")
def exposition(tiny_model_dir) -> str:
    """The real app's /metrics text after a few answered predictions and one bad request."""
    create_app, settings_cls = import_service_app()
    from fastapi.testclient import TestClient

    settings = settings_cls(model_dir=tiny_model_dir, device="cpu")
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + READY_TIMEOUT_S  # models load in the background
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, f"not ready after {READY_TIMEOUT_S} s"
            time.sleep(0.1)
        for image in fixture_images()[:3]:
            files = {"file": (image.name, image.read_bytes(), "image/png")}
            r = client.post("/predict", files=files, data={"model": TINY_MODEL})
            assert r.status_code == 200, r.text
        bad = client.post("/predict", files={"file": ("x.png", b"not an image", "image/png")})
        assert bad.status_code == 400, bad.text
        r = client.get("/metrics")
        assert r.status_code == 200
        return r.text
