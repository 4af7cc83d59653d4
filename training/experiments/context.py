"""What an experiment's `run` receives: its recipe, the device, where its outputs go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.experiments.spec import Recipe
from training.trainer.distributed import Runtime


@dataclass
class Context:
    recipe: Recipe
    runtime: Runtime
    out_dir: Path  # reports/<experiment>/
    quiet: bool = False
    figures: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict[str, Any]:
        return self.recipe.params

    def figure(self, name: str) -> Path:
        """Path for a PNG, recorded so results.json and the page list it."""
        self.figures.append(f"{name}.png")
        return self.out_dir / f"{name}.png"

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.recipe.experiment}] {text}", flush=True)
