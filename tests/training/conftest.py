"""Shared fixtures: synthetic CIFAR files in the official layouts and one tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import main
from training.data.synthetic import write_binary_layout


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory) -> Path:
    return write_binary_layout("cifar10", tmp_path_factory.mktemp("c10"), n_train=160, n_test=64)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, cifar10_dir) -> dict[str, Path]:
    """One `fit --dry-run` on the synthetic CIFAR-10 files (checkpoint + run dir)."""
    root = tmp_path_factory.mktemp("fit")
    paths = {"out": root / "ckpt", "run": root / "run", "data": cifar10_dir}
    argv = [
        "fit",
        "--dry-run",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(cifar10_dir),
        "--out",
        str(paths["out"]),
        "--run-dir",
        str(paths["run"]),
        "--quiet",
    ]
    assert main(argv) == 0
    return paths
