"""Fixtures every test package shares."""

import os

import pytest


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's DYNALAY_* variables must not leak into the settings under test."""
    for name in list(os.environ):
        if name.startswith("DYNALAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
