"""Fixtures for the reliability tests, and the figures they report at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import figures
from tests.service.helpers import write_cnn_checkpoint, write_text_checkpoint


@pytest.fixture(scope="session")
def image_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny CNN named cifar10 (shared: tests only read it)."""
    root = tmp_path_factory.mktemp("image-repo")
    write_cnn_checkpoint(root)
    return root


@pytest.fixture(scope="session")
def two_model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CNN `cifar10` and the tiny LSTM `imdb`: both input paths are reachable."""
    root = tmp_path_factory.mktemp("two-model-repo")
    write_cnn_checkpoint(root)
    write_text_checkpoint(root)
    return root


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if figures.RECORDED:
        terminalreporter.section("reliability figures")
        for line in figures.lines():
            terminalreporter.write_line(line)
