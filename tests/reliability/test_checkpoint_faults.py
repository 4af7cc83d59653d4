"""A tampered, truncated or missing checkpoint file is never served.

The refusal names the file: in full in the server log, relative to the model repository in
HTTP bodies (which must not reveal server paths). DYNALAY_ON_LOAD_ERROR=fail serves nothing
(`python -m service` exits 3); =skip serves the other models and reports that one not ready.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.reliability.clean_errors import leaks
from tests.reliability.live import spawn
from tests.reliability.models import write_cnn
from tests.service.helpers import CIFAR_PNGS, serving, settings_for

PNG = CIFAR_PNGS[0].read_bytes()


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: the size stays, the sha256 does not
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def delete(path: Path) -> None:
    path.unlink()


FAULTS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "tampered weights": ("backbone.safetensors", tamper),
    "truncated weights": ("backbone.safetensors", truncate),
    "missing agent": ("agent.safetensors", delete),
    "tampered config": ("config.json", tamper),
}


def broken_repo(root: Path, fault: str) -> tuple[Path, str]:
    """A repository with a good `cifar10` and a `broken` model; returns it and the bad file."""
    filename, damage = FAULTS[fault]
    write_cnn(root, "cifar10")
    damage(write_cnn(root, "broken") / filename)
    return root, f"broken/{filename}"


def wait_for_load_result(client) -> None:
    """Until loading ended: ready, or given up (healthz 503)."""
    for _ in range(1000):
        if client.get("/readyz").status_code == 200 or client.get("/healthz").status_code == 503:
            return
        client.get("/models")  # let the loader run
    raise AssertionError("loading did not finish")


@pytest.mark.parametrize("fault", FAULTS)
def test_fail_mode_serves_nothing_and_names_the_file(tmp_path, fault):
    repo, bad_file = broken_repo(tmp_path, fault)
    app = create_app(settings_for(repo, on_load_error="fail"))
    with TestClient(app) as client:
        wait_for_load_result(client)
        health, ready = client.get("/healthz"), client.get("/readyz")
        refused = client.post("/predict", files={"file": ("x.png", PNG, "image/png")})
    assert health.status_code == ready.status_code == refused.status_code == 503
    for answer in (health, ready, refused):
        assert bad_file in answer.json()["error"], answer.text
        assert leaks(answer.text) == [], answer.text


@pytest.mark.parametrize("fault", FAULTS)
def test_skip_mode_serves_the_others_and_marks_that_model_not_ready(tmp_path, fault):
    repo, bad_file = broken_repo(tmp_path, fault)
    with serving(create_app(settings_for(repo, on_load_error="skip"))) as client:
        ready = client.get("/readyz")
        good = client.post(
            "/predict", files={"file": ("x.png", PNG, "image/png")}, data={"model": "cifar10"}
        )
        bad = client.post(
            "/predict", files={"file": ("x.png", PNG, "image/png")}, data={"model": "broken"}
        )
        bad_ready = client.get("/v2/models/broken/ready")
    assert ready.status_code == 200 and ready.json()["models"] == ["cifar10"]
    assert bad_file in ready.json()["failed"]["broken"]
    assert good.status_code == 200 and good.json()["model"] == "cifar10"
    assert bad.status_code == 503 and bad_file in bad.json()["error"]
    assert bad_ready.status_code == 503
    assert leaks(ready.text) == [] and leaks(bad.text) == []


def test_skip_mode_with_nothing_loadable_is_a_failure(tmp_path):
    write_cnn(tmp_path, "broken")
    truncate(tmp_path / "broken" / "backbone.safetensors")
    app = create_app(settings_for(tmp_path, on_load_error="skip"))
    with TestClient(app) as client:
        wait_for_load_result(client)
        assert client.get("/healthz").status_code == 503
        assert "no model could be loaded" in client.get("/readyz").json()["error"]


def test_a_real_server_with_a_broken_checkpoint_exits_3_naming_the_file(tmp_path):
    write_cnn(tmp_path / "repo", "broken")
    path = tmp_path / "repo" / "broken" / "backbone.safetensors"
    tamper(path)
    server = spawn(tmp_path / "repo", tmp_path / "server.log", on_load_error="fail")
    try:
        code = server.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise
    assert code == 3, server.log()[-2000:]
    assert f"{path}: sha256 does not match manifest.json" in server.log()
