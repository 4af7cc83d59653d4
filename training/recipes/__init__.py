"""Named training recipes, one JSON file each in this folder (`--preset NAME`).

A file holds "comment" (one line: what the recipe is for), optionally "base" (the recipe it
changes) and TrainConfig sections; a section is laid over the base's key by key, a top-level
value replaces the base's. The measurements behind the choices are in docs/recipes.md.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from training.config import TrainConfig, merge

RECIPE_DIR = Path(__file__).parent
META_KEYS = ("comment", "base")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


@cache
def _read(name: str) -> dict[str, Any]:
    path = RECIPE_DIR / f"{name}.json"
    if not path.exists():
        raise ValueError(f"unknown preset {name!r}; expected one of {recipe_names()}")
    return json.loads(path.read_text())


def recipe(name: str) -> dict[str, Any]:
    """The recipe's TrainConfig overrides, its bases resolved (a fresh dict each call)."""
    doc = _read(name)
    own = {k: v for k, v in doc.items() if k not in META_KEYS}
    if "base" not in doc:
        return copy.deepcopy(own)
    out = recipe(doc["base"])
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def describe(name: str) -> str:
    return _read(name)["comment"]


def preset(name: str) -> TrainConfig:
    return merge(TrainConfig(), recipe(name))
