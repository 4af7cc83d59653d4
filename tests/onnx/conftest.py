"""Fixtures for the ONNX tests: tiny checkpoints exported once per session (read-only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.onnx.helpers import CNN, CNN_CAPPED, LSTM, write_exported

CONFIGS = {"cnn": CNN, "cnn_capped": CNN_CAPPED, "lstm": LSTM}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads; on a busy 2-core box they only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def onnx_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with an exported tiny CNN ("cnn") and LSTM ("lstm")."""
    root = tmp_path_factory.mktemp("onnx_models")
    for name in ("cnn", "lstm"):
        write_exported(root / name, CONFIGS[name], name, seed=0)
    return root


@pytest.fixture(scope="session")
def capped_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CNN with max_iter=4: most loops stop unconverged and fall back to the best iterate."""
    return write_exported(tmp_path_factory.mktemp("capped") / "cnn", CNN_CAPPED, "cnn", seed=0)


@pytest.fixture
def checkpoint(request: pytest.FixtureRequest, onnx_repo: Path) -> Path:
    """Parametrised indirectly with "cnn", "lstm" or "cnn_capped"."""
    if request.param == "cnn_capped":
        return request.getfixturevalue("capped_checkpoint")
    return onnx_repo / request.param
