"""Fig 4.3b: sweep of the cost weight β — action frequencies and accuracy per β, and the
accuracy/compute trade-off against the confidence gate.

Fast and controlled: one backbone is warmed up once (phase 1, which does not depend on β); then,
for each β, a fresh agent is trained on a copy of it (phase 2, backbone frozen, plus
`joint_epochs` of phase 3 if the config asks). With no joint epochs every β sees exactly the same
backbone, so its point and the gate curve of that backbone lie on the same accuracy/compute plane.

`estimators` (params) repeats the sweep for each policy-gradient estimator on the same backbone:
self-critical REINFORCE (the thesis' kind) against the exact all-actions gradient.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

from model.actions import THESIS_ACTIONS
from training.config import merge
from training.evaluation.sweep import plot_sweep, sweep_point
from training.evaluation.tradeoff import gate_curves, plot_tradeoff
from training.experiments import arms, thesis
from training.experiments import markdown as md
from training.experiments.context import Context
from training.experiments.runner import train_arm

TITLE = "Fig 4.3b — cost weight β: action frequencies, accuracy, trade-off against the gate"


def run(ctx: Context) -> dict[str, Any]:
    p, cfg = ctx.params, ctx.recipe.train
    warm = merge(cfg, {"phases": {"agent_epochs": 0, "joint_epochs": 0}})
    backbone = train_arm(ctx, arms.dynalay(), warm, tag=" backbone")
    state = backbone.backbone_state()
    agent_phases = {
        "backbone_epochs": 0,
        "agent_epochs": p.get("agent_epochs", cfg.phases.agent_epochs),
        "joint_epochs": p.get("joint_epochs", 0),
    }
    estimators = p.get("estimators", [cfg.agent.estimator])
    points = []
    for estimator in estimators:
        for beta in p["betas"]:
            agent_cfg = {"beta": beta, "estimator": estimator}
            cfg_b = merge(cfg, {"agent": agent_cfg, "phases": agent_phases})
            tag = f" {estimator} β={beta}"
            agent = train_arm(ctx, arms.dynalay(), cfg_b, init_state=state, tag=tag)
            points.append(sweep_point(beta, estimator, agent.metrics))
    plot_sweep(points, ctx.figure("beta_sweep"))
    plot_tradeoff(
        backbone.metrics,
        {_label(q): (q["mean_layer_evaluations"], q["accuracy"]) for q in points},
        ctx.figure("tradeoff"),
        "Agent per β vs confidence gate (shared backbone, test)",
    )
    return {
        "betas": p["betas"],
        "estimators": estimators,
        "phases_per_beta": agent_phases,
        "shared_backbone": agent_phases["joint_epochs"] == 0,
        "points": points,
        "backbone": {
            "forced": backbone.metrics["forced"],
            "oracle": backbone.metrics["oracle"],
            "gate_curves": gate_curves(backbone.metrics),
        },
    }


def _label(q: dict[str, Any]) -> str:
    return f"{q['estimator']} β={q['beta']:g}"


def markdown(doc: dict[str, Any]) -> list[str]:
    res = doc["results"]
    pts = res["points"]
    rows = [
        [
            _estimator(q),
            f"{q['beta']:g}",
            *(md.pct(q["action_frequencies"][a], 0) for a in THESIS_ACTIONS),
            md.pct(q["accuracy"]),
            md.num(q["mean_layer_evaluations"]),
            md.signed_pts(q["agent_minus_best_gate"]),
        ]
        for q in pts
    ]
    head = [
        "estimator",
        "β",
        *THESIS_ACTIONS,
        "test acc",
        "layer evals",
        "agent − gate (same compute)",
    ]
    lines = [*md.table(head, rows), ""]
    for estimator in dict.fromkeys(_estimator(q) for q in pts):
        mine = [q for q in pts if _estimator(q) == estimator]
        lines += [_summary(estimator, mine), ""]
    return [*lines, f"**Against the thesis**: it reports that {thesis.FIG_43B}."]


def _estimator(q: dict[str, Any]) -> str:
    return q.get("estimator", "self_critical")  # results from before the estimator sweep


def _summary(estimator: str, pts: list[dict[str, Any]]) -> str:
    lo, hi = pts[0], pts[-1]
    above = sum(q["agent_minus_best_gate"] > 0 for q in pts)
    mixed = sum(sum(f >= 0.02 for f in q["action_frequencies"].values()) >= 2 for q in pts)
    return (
        f"`{estimator}`: from β={lo['beta']:g} to β={hi['beta']:g} the compute goes from "
        f"{md.num(lo['mean_layer_evaluations'])} to {md.num(hi['mean_layer_evaluations'])} layer "
        f"evaluations per image and the accuracy from {md.pct(lo['accuracy'])} to "
        f"{md.pct(hi['accuracy'])}; of {len(pts)} values of β, the agent uses ≥ 2 actions "
        f"(≥ 2% each) at {mixed} and is above the best confidence gate at the same compute at "
        f"{above}."
    )
