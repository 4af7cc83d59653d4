"""The cost-weight (β) sweep's points and its three-axis picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from model.actions import actions_in


def sweep_point(beta: float, estimator: str, m: dict[str, Any]) -> dict[str, Any]:
    """One β's agent, from its full_metrics (the sweep experiment's and the report's)."""
    return {
        "beta": beta,
        "estimator": estimator,
        "accuracy": m["accuracy"],
        "mean_layer_evaluations": m["mean_layer_evaluations"],
        "action_frequencies": m["action_frequencies"],
        "mean_reward": m["mean_reward"],
        "gate_accuracy_at_same_compute": m["gate"]["accuracy_at_agent_compute"],
        "best_gate_accuracy_at_same_compute": m["gate"]["best_accuracy_at_agent_compute"],
        "agent_minus_best_gate": m["accuracy"] - m["gate"]["best_accuracy_at_agent_compute"],
    }


def plot_sweep(points: list[dict[str, Any]], path: Path) -> None:
    """The thesis' three-axis picture, one panel per estimator: frequency of each action per β,
    accuracy dashed."""
    estimators = list(dict.fromkeys(q["estimator"] for q in points))
    fig, axes = plt.subplots(1, len(estimators), figsize=(7 * len(estimators), 4.2), squeeze=False)
    for ax, estimator in zip(axes[0], estimators, strict=True):
        mine = [q for q in points if q["estimator"] == estimator]
        betas = [q["beta"] for q in mine]
        for a in actions_in(mine[0]["action_frequencies"]):
            ax.plot(betas, [q["action_frequencies"][a] for q in mine], marker="o", label=a)
        ax.set(xlabel="cost weight β", ylabel="share of test inputs", ylim=(0, 1))
        ax.set_xscale("symlog", linthresh=0.01)  # the interesting βs sit between 0 and 0.05
        ax2 = ax.twinx()
        ax2.plot(betas, [q["accuracy"] for q in mine], "k--", marker="s", label="test accuracy")
        ax2.set_ylabel("test accuracy")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="center right")
        ax.set_title(f"Action frequencies and accuracy per β ({estimator})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
