"""deploy/ray against the code it deploys: the Serve config and the KubeRay RayService validate
with Ray Serve's own schema, import the real application builder, set only settings that
exist, and install the proxy's lost-replica answer; docs/ray.md documents every Ray setting.
(`serve run deploy/ray/serve.yaml` was run by hand on a local cluster; no cluster here.)"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from service.core import Settings
from service.ray import PROXY_CALLBACK, PROXY_CALLBACK_ENV, RaySettings

schema = pytest.importorskip("ray.serve.schema")

REPO = Path(__file__).resolve().parents[2]
RAY_DEPLOY = REPO / "deploy" / "ray"
SERVE_CONFIG = RAY_DEPLOY / "serve.yaml"
RAY_SERVICE = RAY_DEPLOY / "rayservice.yaml"
DOCKERFILE = RAY_DEPLOY / "Dockerfile"


def serve_configs() -> dict[str, dict]:
    service = yaml.safe_load(RAY_SERVICE.read_text())
    return {
        "serve.yaml": yaml.safe_load(SERVE_CONFIG.read_text()),
        "rayservice.yaml": yaml.safe_load(service["spec"]["serveConfigV2"]),
    }


@pytest.mark.parametrize("name", ["serve.yaml", "rayservice.yaml"])
def test_the_serve_config_validates_and_imports_the_real_builder(name, monkeypatch):
    config = serve_configs()[name]
    parsed = schema.ServeDeploySchema.model_validate(config)
    (app,) = parsed.applications
    assert (app.name, app.route_prefix) == ("dynalay", "/")
    module, attribute = app.import_path.split(":")
    builder = getattr(importlib.import_module(module), attribute)
    from service.ray import app_builder

    assert builder is app_builder
    env = app.runtime_env["env_vars"]
    ray_fields = {f"DYNALAY_RAY_{f.upper()}" for f in RaySettings.model_fields}
    service_fields = {f"DYNALAY_{f.upper()}" for f in Settings.model_fields}
    assert set(env) <= ray_fields | service_fields, set(env) - ray_fields - service_fields
    for key, value in env.items():  # the values parse as the settings would read them
        monkeypatch.setenv(key, value)
    Settings(), RaySettings()


def test_the_rayservice_installs_the_proxy_answer_and_exports_metrics_everywhere():
    service = yaml.safe_load(RAY_SERVICE.read_text())
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env[PROXY_CALLBACK_ENV] == PROXY_CALLBACK
            assert 8080 in {p["containerPort"] for p in container["ports"]}
    module, attribute = PROXY_CALLBACK.split(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    ray_version = re.search(r"rayproject/ray:([\d.]+)-", DOCKERFILE.read_text()).group(1)
    assert cluster["rayVersion"] == ray_version


def test_the_ray_image_sets_the_proxy_callback_and_the_model_dir():
    text = DOCKERFILE.read_text()
    assert f"{PROXY_CALLBACK_ENV}={PROXY_CALLBACK}" in text
    assert 'pip install ".[ray]"' in text
    model_dir = serve_configs()["rayservice.yaml"]["applications"][0]["runtime_env"]["env_vars"]
    assert f"DYNALAY_MODEL_DIR={model_dir['DYNALAY_MODEL_DIR']}" in text


def test_the_ray_page_documents_every_ray_setting():
    readme = (REPO / "docs" / "ray.md").read_text()
    missing = [
        f"DYNALAY_RAY_{f.upper()}"
        for f in RaySettings.model_fields
        if f"`DYNALAY_RAY_{f.upper()}`" not in readme
    ]
    assert not missing
