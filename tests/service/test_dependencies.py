"""The core dependencies are what model/ and service/ import, and nothing training-only: `pip
install .` is enough to serve, and building the served app loads no training library, no
training code and no development client."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
FIRST_PARTY = {"model", "service", "training", "benchmarks", "tests"}
TRAINING_ONLY = {"matplotlib", "torchdeq"}
DEV_CLIENTS = {"httpx", "tritonclient"}
# Modules model/ and service/ import only inside the functions of an optional engine, or only in
# service/ray (the Ray Serve variant): each comes with the extra named here.
EXTRA_MODULES = {"onnx": "onnx", "onnxruntime": "onnx", "ray": "ray"}
# Declared although nothing imports it by name: starlette's MultiPartParser runs on it.
NEEDED_INDIRECTLY = {"python-multipart"}


def distribution_name(requirement: str) -> str:
    """'uvicorn[standard]>=0.29,<1' -> 'uvicorn'; names normalised as pip compares them."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def core() -> set[str]:
    return {distribution_name(r) for r in PROJECT["dependencies"]}


def extra(name: str) -> set[str]:
    return {distribution_name(r) for r in PROJECT["optional-dependencies"][name]}


def top_level_imports(path: Path) -> set[str]:
    """Top-level names of every module the file imports (anywhere in it)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def third_party_imports(files: list[Path]) -> set[str]:
    names = set().union(*(top_level_imports(path) for path in files))
    return names - FIRST_PARTY - set(sys.stdlib_module_names) - {"__future__"}


def served_files() -> list[Path]:
    """model/ and service/ without service/ray (the `ray` extra's code)."""
    service = sorted(
        p for p in (ROOT / "service").rglob("*.py") if p.relative_to(ROOT).parts[1] != "ray"
    )
    return sorted((ROOT / "model").rglob("*.py")) + service


def test_core_dependencies_hold_no_training_library():
    assert not core() & TRAINING_ONLY
    assert extra("train") >= TRAINING_ONLY
    for serving in ("onnx", "gpu", "ray"):
        assert not extra(serving) & TRAINING_ONLY, serving


def test_dev_extra_pulls_what_every_other_cpu_extra_pulls():
    # `make test` installs `.[dev]` only; `gpu` is left out (its onnxruntime wheel conflicts).
    for name in ("onnx", "ray", "train"):
        assert extra(name) <= extra("dev"), name
    assert extra("dev") >= DEV_CLIENTS


def test_core_is_exactly_what_model_and_service_import():
    by_module = importlib.metadata.packages_distributions()
    declared = core()
    covered: set[str] = set()
    for module in sorted(third_party_imports(served_files())):
        if module in EXTRA_MODULES:
            continue
        distributions = {distribution_name(d) for d in by_module.get(module, [])}
        assert distributions & declared, f"{module} is imported but no core dependency has it"
        covered |= distributions & declared
    assert declared - covered == NEEDED_INDIRECTLY
    for module, name in EXTRA_MODULES.items():
        assert {distribution_name(d) for d in by_module.get(module, [])} & extra(name), module


def test_service_imports_no_development_client_and_no_benchmark():
    for path in sorted((ROOT / "service").rglob("*.py")):
        assert not top_level_imports(path) & (DEV_CLIENTS | {"benchmarks", "tests"}), path


# In a fresh interpreter: imports every module of the single-process service, builds the app
# from the embedded checkpoints and runs its lifespan until every model is loaded and warmed up,
# notes which of the forbidden top-level modules (argv[1]) are in sys.modules; then, where the
# `ray` extra is installed, imports every module of service/ray (no cluster starts) and notes
# them again. Prints one JSON line.
BUILD_THE_APP = """
import asyncio, importlib, importlib.util, json, pkgutil, sys
from pathlib import Path

import service
from service.app.factory import create_app
from service.core.settings import Settings

forbidden = sys.argv[1].split(",")

def loaded() -> list[str]:
    return sorted(m for m in sys.modules if m.split(".")[0] in forbidden)

for module in pkgutil.walk_packages(service.__path__, "service."):
    if not module.name.startswith("service.ray"):
        importlib.import_module(module.name)

settings = Settings(model_dir=Path("checkpoints"), device="cpu", grpc_port=0, api_key=None)
app = create_app(settings)

async def load() -> list[str]:
    async with app.router.lifespan_context(app):
        state = app.state.dynalay
        while not state.ready:
            assert state.load_error is None, state.load_error
            await asyncio.sleep(0.05)
        return sorted(state.models)

report = {"served": asyncio.run(load()), "loaded_by_the_app": loaded()}
if importlib.util.find_spec("ray") is not None:
    import service.ray

    for module in pkgutil.walk_packages(service.ray.__path__, "service.ray."):
        importlib.import_module(module.name)
    report["loaded_with_service_ray"] = loaded()
print(json.dumps(report))
"""
FORBIDDEN = TRAINING_ONLY | {"training"} | DEV_CLIENTS


@pytest.fixture(scope="module")
def built_app_report() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_THE_APP, ",".join(sorted(FORBIDDEN))],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_building_the_served_app_loads_no_training_library_or_dev_client(built_app_report):
    assert built_app_report["served"] == ["cifar10", "imdb"]
    assert built_app_report["loaded_by_the_app"] == []


def test_service_ray_loads_no_training_library(built_app_report):
    if "loaded_with_service_ray" not in built_app_report:
        pytest.skip("the `ray` extra is not installed")
    training = TRAINING_ONLY | {"training"}
    loaded = {name.split(".")[0] for name in built_app_report["loaded_with_service_ray"]}
    assert not loaded & training
