"""Fixtures every test package shares."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def onnx_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX engine's export cache for the whole run (never the developer's own)."""
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, onnx_cache_dir: Path) -> None:
    """A developer's DYNALAY_* variables must not leak into the settings under test.

    Servers a test starts (in process or as `python -m service`) export ONNX parts into a
    temporary cache, and open no gRPC port unless the test asks for one.
    """
    for name in list(os.environ):
        if name.startswith("DYNALAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DYNALAY_ONNX_CACHE_DIR", str(onnx_cache_dir))
    monkeypatch.setenv("DYNALAY_GRPC_PORT", "0")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
