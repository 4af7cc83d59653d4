"""The experiments in page order, each a module with TITLE, run(ctx) and markdown(doc)."""

from __future__ import annotations

import importlib
from types import ModuleType

EXPERIMENTS = ("table41", "fig41", "fig43a", "fig43b", "fig44")


def experiment_module(name: str) -> ModuleType:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; expected one of {EXPERIMENTS}")
    return importlib.import_module(f"training.experiments.{name}")
