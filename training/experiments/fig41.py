"""Fig 4.1: how often the trained agent picks each action on the test set (and per epoch).

One DynaLay run; the figure is training.evaluation.plots' action-frequency plot of that run.
"""

from __future__ import annotations

from typing import Any

from model.actions import THESIS_ACTIONS
from training.evaluation.plots import Run, plot_action_frequencies
from training.experiments import arms, thesis
from training.experiments import markdown as md
from training.experiments.context import Context
from training.experiments.runner import train_arm

TITLE = "Fig 4.1 — the agent's action frequencies on the test set"


def run(ctx: Context) -> dict[str, Any]:
    agent = train_arm(ctx, arms.dynalay())
    label = f"DynaLay seed {agent.cfg.seed}"
    plotted = plot_action_frequencies(
        Run(label, agent.history, agent.metrics), ctx.figure("action_frequencies")
    )
    m = agent.metrics
    return {
        "action_frequencies": {a: m["action_frequencies"][a] for a in THESIS_ACTIONS},
        "accuracy_per_action": m["accuracy_per_action"],
        "iterations_per_action": m["iterations_per_action"],
        "accuracy": m["accuracy"],
        "mean_layer_evaluations": m["mean_layer_evaluations"],
        "per_epoch": {"epochs": plotted["epochs"], "frequencies": plotted["per_epoch"]},
        "metrics": m,
    }


def markdown(doc: dict[str, Any]) -> list[str]:
    res = doc["results"]
    rows = [
        [
            a,
            md.pct(res["action_frequencies"][a]),
            md.pct(res["accuracy_per_action"][a]),
            md.num(res["iterations_per_action"][a], 1),
        ]
        for a in THESIS_ACTIONS
    ]
    freq = res["action_frequencies"]
    most = max(freq, key=freq.get)
    return [
        *md.table(["action", "share of test inputs", "accuracy on them", "iterations"], rows),
        "",
        f"Agent accuracy {md.pct(res['accuracy'])} at {md.num(res['mean_layer_evaluations'])} "
        "layer evaluations per image.",
        "",
        f"**Against the thesis**: it reports {thesis.FIG_41['claim']}. Here {most} is the most "
        f"frequent ({md.pct(freq[most])}); loop_l1 {md.pct(freq['loop_l1'])}, loop_l1_l2 "
        f"{md.pct(freq['loop_l1_l2'])}, loop_all {md.pct(freq['loop_all'])}.",
    ]
