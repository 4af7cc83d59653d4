"""Fixtures every test package shares."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def onnx_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX engine's export cache for the whole run (never the developer's own)."""
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(autouse=True, scope="session")
def service_env(onnx_cache_dir: Path) -> Iterator[None]:
    """For the whole run, module- and session-scoped servers included: servers a test starts
    (in process or as `python -m service`) export ONNX parts into a temporary cache and open
    no gRPC port unless the test asks for one (Triton's 8001 may be taken on this machine)."""
    with pytest.MonkeyPatch.context() as patch:
        _test_defaults(patch, onnx_cache_dir)
        yield


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, onnx_cache_dir: Path) -> None:
    """A developer's DYNALAY_* variables must not leak into the settings under test."""
    for name in list(os.environ):
        if name.startswith("DYNALAY_"):
            monkeypatch.delenv(name)
    _test_defaults(monkeypatch, onnx_cache_dir)


def _test_defaults(patch: pytest.MonkeyPatch, onnx_cache_dir: Path) -> None:
    patch.setenv("DYNALAY_ONNX_CACHE_DIR", str(onnx_cache_dir))
    patch.setenv("DYNALAY_GRPC_PORT", "0")
    # Served answers are compared with fp32 NCHW references (the tests of precision and layout
    # ask for theirs): nothing timed at load may change which kernels a test's model runs.
    patch.setenv("DYNALAY_PRECISION", "fp32")
    patch.setenv("DYNALAY_LAYOUT", "nchw")
    # Engines on a thread of the test's process (stub engines need not pickle, and no test pays
    # a spawn per app); tests/service/test_engine_process.py serves them in their own processes.
    patch.setenv("DYNALAY_ENGINE_PROCESS", "false")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
