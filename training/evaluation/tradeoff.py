"""The accuracy/compute plane: gate curves, forced actions and oracle of one backbone, plus
any named models (other arms, the agent at each β). Shared by Table 4.1 and Fig 4.3b."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from model.actions import actions_in


def gate_curves(metrics: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """{gate action: {mean_layer_evaluations, accuracy, threshold}} from full_metrics."""
    return {
        name: {
            "threshold": [r["threshold"] for r in sweep],
            "mean_layer_evaluations": [r["mean_layer_evaluations"] for r in sweep],
            "accuracy": [r["accuracy"] for r in sweep],
        }
        for name, sweep in metrics["gate"]["sweeps_by_action"].items()
    }


def plot_tradeoff(
    backbone: dict[str, Any],
    points: dict[str, tuple[float, float]],
    path: Path,
    title: str,
    unit: str = "image",
) -> None:
    """backbone: full_metrics of the model the gate and oracle are read from;
    points: label → (mean layer evaluations, accuracy); unit: what one input is."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for name, c in gate_curves(backbone).items():
        style = "-" if name == backbone["gate"]["action"] else ":"
        ax.plot(
            c["mean_layer_evaluations"], c["accuracy"], style, marker=".", label=f"gate → {name}"
        )
    for a in actions_in(backbone["forced"]):
        f = backbone["forced"][a]
        ax.scatter(f["mean_layer_evaluations"], f["accuracy"], marker="s", s=25, color="gray")
        ax.annotate(a, (f["mean_layer_evaluations"], f["accuracy"]), fontsize=7, color="gray")
    o = backbone["oracle"]
    ax.scatter(
        o["mean_layer_evaluations"], o["accuracy"], marker="^", s=60, color="green", label="oracle"
    )
    markers = iter("*oDvP<>hX")
    for label, (evals, acc) in points.items():
        ax.scatter(evals, acc, marker=next(markers, "o"), s=90, zorder=5, label=label)
    ax.set(title=title, xlabel=f"mean layer evaluations / {unit}", ylabel="test accuracy")
    # Below the axes: inside, the legend hid the curves it names.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
