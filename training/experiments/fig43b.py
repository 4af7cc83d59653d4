"""Fig 4.3b: sweep of the cost weight β — action frequencies and accuracy per β, and the
accuracy/compute trade-off against the confidence gate.

Fast and controlled: one backbone is warmed up once (phase 1, which does not depend on β); then,
for each β, a fresh agent is trained on a copy of it (phase 2, backbone frozen, plus
`joint_epochs` of phase 3 if the config asks). With no joint epochs every β sees exactly the same
backbone, so its point and the gate curve of that backbone lie on the same accuracy/compute plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from model.actions import ACTIONS
from training.config import merge
from training.experiments import arms, thesis
from training.experiments import markdown as md
from training.experiments.context import Context
from training.experiments.runner import train_arm
from training.experiments.tradeoff import gate_curves, plot_tradeoff

TITLE = "Fig 4.3b — cost weight β: action frequencies, accuracy, trade-off against the gate"


def run(ctx: Context) -> dict[str, Any]:
    p, cfg = ctx.params, ctx.recipe.train
    warm = merge(cfg, {"phases": {"agent_epochs": 0, "joint_epochs": 0}})
    backbone = train_arm(ctx, arms.dynalay(), warm, tag=" backbone")
    state = backbone.backbone_state()
    agent_phases = {
        "warmup_epochs": 0,
        "agent_epochs": p.get("agent_epochs", cfg.phases.agent_epochs),
        "joint_epochs": p.get("joint_epochs", 0),
    }
    points = []
    for beta in p["betas"]:
        cfg_b = merge(cfg, {"agent": {"beta": beta}, "phases": agent_phases})
        agent = train_arm(ctx, arms.dynalay(), cfg_b, init_state=state, tag=f" β={beta}")
        points.append(_point(beta, agent.metrics))
    plot_sweep(points, ctx.figure("beta_sweep"))
    plot_tradeoff(
        backbone.metrics,
        {f"agent β={q['beta']:g}": (q["mean_layer_evaluations"], q["accuracy"]) for q in points},
        ctx.figure("tradeoff"),
        "Agent per β vs confidence gate (shared backbone, test)",
    )
    return {
        "betas": p["betas"],
        "phases_per_beta": agent_phases,
        "shared_backbone": agent_phases["joint_epochs"] == 0,
        "points": points,
        "backbone": {
            "forced": backbone.metrics["forced"],
            "oracle": backbone.metrics["oracle"],
            "gate_curves": gate_curves(backbone.metrics),
        },
    }


def _point(beta: float, m: dict[str, Any]) -> dict[str, Any]:
    return {
        "beta": beta,
        "accuracy": m["accuracy"],
        "mean_layer_evaluations": m["mean_layer_evaluations"],
        "action_frequencies": m["action_frequencies"],
        "mean_reward": m["mean_reward"],
        "gate_accuracy_at_same_compute": m["gate"]["accuracy_at_agent_compute"],
        "best_gate_accuracy_at_same_compute": m["gate"]["best_accuracy_at_agent_compute"],
        "agent_minus_best_gate": m["accuracy"] - m["gate"]["best_accuracy_at_agent_compute"],
    }


def plot_sweep(points: list[dict[str, Any]], path: Path) -> None:
    """The thesis' three-axis picture: frequency of each action per β, accuracy dashed."""
    betas = [q["beta"] for q in points]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for a in ACTIONS:
        ax.plot(betas, [q["action_frequencies"][a] for q in points], marker="o", label=a)
    ax.set(xlabel="cost weight β", ylabel="share of test inputs", ylim=(0, 1))
    ax2 = ax.twinx()
    ax2.plot(betas, [q["accuracy"] for q in points], "k--", marker="s", label="test accuracy")
    ax2.set_ylabel("test accuracy")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="center right")
    ax.set_title("Action frequencies and accuracy per β")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(doc: dict[str, Any]) -> list[str]:
    res = doc["results"]
    pts = res["points"]
    rows = [
        [
            f"{q['beta']:g}",
            *(md.pct(q["action_frequencies"][a], 0) for a in ACTIONS),
            md.pct(q["accuracy"]),
            md.num(q["mean_layer_evaluations"]),
            md.signed_pts(q["agent_minus_best_gate"]),
        ]
        for q in pts
    ]
    head = ["β", *ACTIONS, "test acc", "layer evals", "agent − gate (same compute)"]
    lo, hi = pts[0], pts[-1]
    above = sum(q["agent_minus_best_gate"] > 0 for q in pts)
    return [
        *md.table(head, rows),
        "",
        f"From β={lo['beta']:g} to β={hi['beta']:g} the compute goes from "
        f"{md.num(lo['mean_layer_evaluations'])} to {md.num(hi['mean_layer_evaluations'])} layer "
        f"evaluations per image and the accuracy from {md.pct(lo['accuracy'])} to "
        f"{md.pct(hi['accuracy'])}; the agent is above the best confidence gate at the same "
        f"compute for {above} of {len(pts)} values of β.",
        "",
        f"**Against the thesis**: it reports that {thesis.FIG_43B}.",
    ]
