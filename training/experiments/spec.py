"""Experiment configs (configs/experiments/NAME.json) resolved into one recipe.

A config file:
    {"experiment": NAME, "title": ..., "preset": "cpu", "train": {...}, "params": {...},
     "recipes": {"full": {...}, "reduced": {...}, "dry_run": {...}}}
Each recipe may set "note", "preset", "train" (TrainConfig overrides, applied after the
shared ones) and "params" (experiment settings: arms, seeds, betas, ...). Resolution order:
preset → shared train → recipe train → command-line overrides (data dir, device, threads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import TrainConfig, merge
from training.recipes import preset

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "experiments"
MODES = ("full", "reduced", "dry_run")


@dataclass(frozen=True)
class Recipe:
    experiment: str
    title: str
    mode: str  # full | reduced | dry_run
    note: str
    config_file: Path
    train: TrainConfig
    params: dict[str, Any] = field(default_factory=dict)


def available() -> list[str]:
    """Experiment names with a committed config."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_recipe(
    name: str,
    mode: str = "full",
    overrides: dict[str, Any] | None = None,
    config_dir: Path = CONFIG_DIR,
) -> Recipe:
    path = Path(config_dir) / f"{name}.json"
    if not path.exists():
        raise ValueError(f"no experiment config {path}; expected one of {available()}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    spec = json.loads(path.read_text())
    recipe = spec["recipes"][mode]
    cfg = preset(recipe.get("preset", spec.get("preset", "thesis")))
    cfg = merge(merge(cfg, spec.get("train", {})), recipe.get("train", {}))
    cfg = merge(cfg, _command_line(overrides or {}, mode))
    return Recipe(
        experiment=spec["experiment"],
        title=spec["title"],
        mode=mode,
        note=recipe.get("note", ""),
        config_file=path,
        train=cfg,
        params={**spec.get("params", {}), **recipe.get("params", {})},
    )


def _command_line(o: dict[str, Any], mode: str) -> dict[str, Any]:
    """--data-dir / --device / --threads as config overrides (a dry run stays synthetic)."""
    out: dict[str, Any] = {k: o[k] for k in ("device", "threads") if o.get(k) is not None}
    if o.get("data_dir") and mode != "dry_run":
        out["data"] = {"data_dir": str(o["data_dir"])}
    return out
