"""Table 4.1: accuracy, training time (forward and backward apart), inference time per image
and mean layer evaluations of the plain model, always-loop_all, the DEQ with solvers, the
confidence gate, the per-sample oracle and DynaLay — trained and measured in one run.

The gate and the oracle are read off DynaLay's backbone (no training of their own); the gate
row is the swept threshold whose compute is closest to the agent's, timed like the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from model.actions import ACTIONS
from training.evaluation.tradeoff import plot_tradeoff
from training.experiments import arms, thesis
from training.experiments import markdown as md
from training.experiments.context import Context
from training.experiments.runner import ArmRun, train_arm
from training.experiments.timed_inference import InferenceResult, gate_policy
from training.trainer.phases import backbone_training_epochs

TITLE = "Table 4.1 — DynaLay against a plain model, loop_all, a solver DEQ, a gate, the oracle"
TIMED = ("train_forward_seconds", "train_backward_seconds", "train_seconds", "ms_per_image")


def run(ctx: Context) -> dict[str, Any]:
    p = ctx.params
    runs: dict[str, ArmRun] = {}
    rows = []
    for name in p["arms"]:
        runs[name] = train_arm(ctx, arms.by_name(name, p))
        rows.append(_arm_row(runs[name], runs[name].inference()))
    results: dict[str, Any] = {"rows": rows, "budget": _budget(ctx)}
    agent = runs.get("dynalay")
    if agent is not None:
        rows += [_gate_row(agent), _oracle_row(agent.metrics)]
        results["dynalay_metrics"] = agent.metrics
        results["targets"] = targets(agent.metrics, _row(rows, "loop_all"))
    # Every agent arm against its own backbone's forced actions and gate.
    results["targets_by_arm"] = {
        name: targets(r.metrics, _row(rows, "loop_all"))
        for name, r in runs.items()
        if r.arm.action is None
    }
    results["ratios"] = ratios(rows)
    plot_table(rows, ctx.figure("table41"))
    if agent is not None:
        points = {r["label"]: (r["mean_layer_evaluations"], r["accuracy"]) for r in rows}
        points.pop(_row(rows, "oracle")["label"])
        plot_tradeoff(agent.metrics, points, ctx.figure("tradeoff"), "Accuracy vs compute (test)")
    return results


def _budget(ctx: Context) -> dict[str, Any]:
    p = ctx.recipe.train.phases
    return {
        "backbone_epochs_every_arm": backbone_training_epochs(p),
        "dynalay_phases": {
            "backbone": p.backbone_epochs,
            "agent": p.agent_epochs,
            "joint": p.joint_epochs,
        },
        "note": "forced arms train the backbone as many epochs as DynaLay's backbone + joint "
        "phases, same optimiser, schedule, augmentation, seed; DynaLay also trains its agent",
    }


def _arm_row(run: ArmRun, inf: InferenceResult) -> dict[str, Any]:
    t = run.timing.to_dict()
    if run.arm.action is None:
        converged = run.metrics["converged_share"]
    else:
        converged = run.metrics["forced"][ACTIONS[run.arm.action]]["converged_share"]
    return {
        "model": run.arm.name,
        "label": run.arm.label,
        "accuracy": inf.accuracy,
        "test_loss": inf.loss,
        "mean_layer_evaluations": inf.mean_layer_evaluations,
        "converged_share": converged,
        "ms_per_image": inf.ms_per_image,
        "train_forward_seconds": t["forward_seconds"],
        "train_backward_seconds": t["backward_seconds"],
        "train_seconds": t["train_seconds"],
        "epochs": run.cfg.total_epochs,
        "timing": t,
        "inference": inf.to_dict(),
        "model_config": run.net.config.to_dict(),
    }


def _gate_row(agent: ArmRun) -> dict[str, Any]:
    m = agent.metrics
    target = m["mean_layer_evaluations"]
    point = min(m["gate"]["sweep"], key=lambda r: abs(r["mean_layer_evaluations"] - target))
    action = ACTIONS.index(m["gate"]["action"])
    inf = agent.inference(gate_policy(point["threshold"], action))
    return {
        "model": "gate",
        "label": f"confidence gate → {m['gate']['action']} (top prob < {point['threshold']:g})",
        "accuracy": inf.accuracy,
        "test_loss": inf.loss,
        "mean_layer_evaluations": inf.mean_layer_evaluations,
        "converged_share": None,
        "ms_per_image": inf.ms_per_image,
        "train_forward_seconds": None,  # DynaLay's backbone, no agent: nothing of its own
        "train_backward_seconds": None,
        "train_seconds": None,
        "threshold": point["threshold"],
        "loop_share": point["loop_share"],
        "accuracy_at_agent_compute": m["gate"]["accuracy_at_agent_compute"],
        "inference": inf.to_dict(),
    }


def _oracle_row(m: dict[str, Any]) -> dict[str, Any]:
    o = m["oracle"]
    return {
        "model": "oracle",
        "label": "per-sample oracle (cheapest right action; needs the label)",
        "accuracy": o["accuracy"],
        "mean_layer_evaluations": o["mean_layer_evaluations"],
        **{k: None for k in (*TIMED, "train_forward_seconds", "test_loss", "converged_share")},
    }


def _row(rows: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["model"] == model), None)


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each timed quantity of each row divided by the plain model's and by the solver DEQ's."""
    out: dict[str, dict[str, float | None]] = {}
    for ref in ("plain", "deq_solver"):
        base = _row(rows, ref)
        if base is None:
            continue
        for r in rows:
            out.setdefault(r["model"], {}).update(
                {f"{k}_vs_{ref}": _div(r.get(k), base.get(k)) for k in TIMED}
            )
    return out


def targets(m: dict[str, Any], loop_all_row: dict[str, Any] | None) -> dict[str, Any]:
    """The release targets (agent vs best forced action, vs the gate at its compute, vs
    loop_all's compute), on the DynaLay backbone's own forced actions and gate."""
    best = max(m["forced"].values(), key=lambda f: f["accuracy"] or 0.0)
    loop_all = m["forced"]["loop_all"]["mean_layer_evaluations"]
    share = m["mean_layer_evaluations"] / loop_all if loop_all else None
    return {
        "agent_minus_best_forced_accuracy": m["accuracy"] - best["accuracy"],
        "agent_share_of_loop_all_evaluations": share,
        "agent_minus_gate_accuracy_at_matched_compute": m["accuracy"]
        - m["gate"]["accuracy_at_agent_compute"],
        "agent_minus_best_gate_accuracy_at_matched_compute": m["accuracy"]
        - m["gate"]["best_accuracy_at_agent_compute"],
        "met_accuracy_at_60pct_compute": bool(
            m["accuracy"] >= best["accuracy"] and share is not None and share <= 0.6
        ),
        "met_above_gate": bool(m["accuracy"] > m["gate"]["best_accuracy_at_agent_compute"]),
        "agent_minus_loop_all_arm_accuracy": None
        if loop_all_row is None
        else m["accuracy"] - loop_all_row["accuracy"],
    }


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def plot_table(rows: list[dict[str, Any]], path: Path) -> None:
    names = [r["model"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    panels = [
        ("test accuracy", [r["accuracy"] for r in rows]),
        ("inference ms / image", [r["ms_per_image"] for r in rows]),
        ("mean layer evaluations / image", [r["mean_layer_evaluations"] for r in rows]),
    ]
    for ax, (title, values) in zip((axes[0], axes[2], axes[3]), panels, strict=True):
        ax.bar(names, [v or 0.0 for v in values], color="tab:blue")
        ax.set_title(title, fontsize=9)
    fwd = [r["train_forward_seconds"] or 0.0 for r in rows]
    bwd = [r["train_backward_seconds"] or 0.0 for r in rows]
    rest = [
        max((r["train_seconds"] or 0.0) - f - b, 0.0)
        for r, f, b in zip(rows, fwd, bwd, strict=True)
    ]
    axes[1].bar(names, fwd, label="forward")
    axes[1].bar(names, bwd, bottom=fwd, label="backward")
    axes[1].bar(names, rest, bottom=[f + b for f, b in zip(fwd, bwd, strict=True)], label="other")
    axes[1].set_title("training wall time (s)", fontsize=9)
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(doc: dict[str, Any]) -> list[str]:
    res = doc["results"]
    headers = ["model", "test acc", "train fwd s", "train bwd s", "train s", "infer ms/img"]
    headers += ["layer evals/img", "converged"]
    lines = md.table(headers, [_md_row(r) for r in res["rows"]])
    dataset = doc["train_config"]["data"]["dataset"]
    by_arm = res.get("targets_by_arm") or {"dynalay": res.get("targets")}
    target_lines = [line for name, t in by_arm.items() for line in _targets_line(name, t)]
    return [*lines, "", *against_thesis(res["rows"], dataset), *target_lines]


def _md_row(r: dict[str, Any]) -> list[str]:
    return [
        r["label"],
        md.pct(r["accuracy"]),
        md.num(r["train_forward_seconds"], 1),
        md.num(r["train_backward_seconds"], 1),
        md.num(r["train_seconds"], 1),
        md.num(r["ms_per_image"], 3),
        md.num(r["mean_layer_evaluations"]),
        md.pct(r.get("converged_share")),
    ]


def against_thesis(rows: list[dict[str, Any]], dataset: str) -> list[str]:
    ref = thesis.TABLE_41.get(dataset)
    if not ref:
        return [f"The thesis has no Table 4.1 numbers for {dataset}."]
    out = [f"**Against the thesis** ({thesis.TABLE_41['hardware']}, 100 epochs):", ""]
    accs = [
        f"{name} {md.pct(r['accuracy'])} (thesis {md.pct(ref[name]['accuracy'], 0)})"
        for name in ("dynalay", "plain", "deq_solver")
        if name in ref and (r := _row(rows, name))
    ]
    out.append(f"- Test accuracy: {', '.join(accs)}.")
    plain = _row(rows, "plain")
    for name in ("dynalay", "deq_solver"):
        r = _row(rows, name)
        if plain and r and name in ref:
            out.append(_backward_line(name, r, plain, ref))
    return out


def _backward_line(name: str, r: dict[str, Any], plain: dict[str, Any], ref: dict) -> str:
    theirs = ref[name]["backward_minutes"] / ref["plain"]["backward_minutes"]
    ours = _div(r["train_backward_seconds"], plain["train_backward_seconds"])
    same_side = ours is not None and (ours < 1) == (theirs < 1)
    return (
        f"- Backward time {name} / plain: {md.num(ours)}× here, {theirs:.2f}× in the thesis "
        f"({'same direction' if same_side else 'opposite direction'})."
    )


def _targets_line(name: str, t: dict[str, Any] | None) -> list[str]:
    if not t:
        return []
    compute = "met" if t["met_accuracy_at_60pct_compute"] else "not met"
    gate = "above" if t["met_above_gate"] else "not above"
    return [
        f"- Issue targets, `{name}`: agent − best forced action of its backbone "
        f"{md.signed_pts(t['agent_minus_best_forced_accuracy'])} at "
        f"{md.pct(t['agent_share_of_loop_all_evaluations'], 0)} of loop_all's layer evaluations "
        f"(≥ 0 pt at ≤ 60%: {compute}); agent − best gate at matched compute "
        f"{md.signed_pts(t['agent_minus_best_gate_accuracy_at_matched_compute'])} "
        f"({gate} the gate curve)."
    ]
