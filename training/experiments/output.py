"""results.json: an experiment's numbers with everything needed to trust and redo them."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.experiments.context import Context
from training.experiments.hardware import REPO, git_info, hardware

RESULTS = "results.json"


def write_results(
    ctx: Context, results: dict[str, Any], command: str, started: datetime, wall: float
) -> Path:
    r = ctx.recipe
    doc = {
        "experiment": r.experiment,
        "title": r.title,
        "mode": r.mode,
        "recipe_note": r.note,
        "command": command,
        "config_file": _relative(r.config_file),
        "hardware": hardware(ctx.runtime.device),
        "git": git_info(),
        "started_utc": started.astimezone(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 2),
        "train_config": r.train.to_dict(),
        "params": r.params,
        "figures": ctx.figures,
        "results": results,
    }
    path = ctx.out_dir / RESULTS
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_finite(doc), indent=1) + "\n")
    tmp.replace(path)
    return path


def read_results(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _finite(value: Any) -> Any:
    """NaN/inf (e.g. the accuracy of an action nobody took) → null: strict JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
