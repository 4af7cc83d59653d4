"""Fixtures for the service tests (helpers live in helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.helpers import serving, settings_for, write_cnn_checkpoint


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding one tiny CNN named cifar10 (shared: tests only read it)."""
    root = tmp_path_factory.mktemp("models")
    write_cnn_checkpoint(root)
    return root


@pytest.fixture
def client(model_dir: Path) -> Iterator[TestClient]:
    with serving(create_app(settings_for(model_dir))) as test_client:
        yield test_client


@pytest.fixture
def stub_repo(tmp_path: Path) -> Path:
    """A model repository with one directory the stub factory accepts."""
    (tmp_path / "stub").mkdir()
    (tmp_path / "stub" / "manifest.json").write_text("{}")
    return tmp_path
