"""Fixtures for the ONNX tests: tiny checkpoints exported once per session (read-only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.onnx.helpers import CNN, CNN_CAPPED, CNN_STAGED, CNN_WHITEN, LSTM, write_exported

CONFIGS = {
    "cnn": CNN,
    "cnn_capped": CNN_CAPPED,
    "cnn_whiten": CNN_WHITEN,
    "cnn_staged": CNN_STAGED,
    "lstm": LSTM,
}


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


@pytest.fixture(scope="session")
def whitened_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whitened-stem CNN (BatchNorm in the stem), exported."""
    root = tmp_path_factory.mktemp("whitened")
    return write_exported(root / "cnn", CNN_WHITEN, "cnn", seed=0)


@pytest.fixture(scope="session")
def staged_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The staged CNN (stages of three shapes, transitions as their own parts), exported."""
    root = tmp_path_factory.mktemp("staged")
    return write_exported(root / "cnn", CNN_STAGED, "cnn", seed=0)


@pytest.fixture
def checkpoint(request: pytest.FixtureRequest, onnx_repo: Path) -> Path:
    """Parametrised indirectly with "cnn", "lstm", "cnn_capped", "cnn_whiten" or "cnn_staged"."""
    if request.param == "cnn_staged":
        return request.getfixturevalue("staged_checkpoint")
    if request.param == "cnn_capped":
        return request.getfixturevalue("capped_checkpoint")
    if request.param == "cnn_whiten":
        return request.getfixturevalue("whitened_checkpoint")
    return onnx_repo / request.param
