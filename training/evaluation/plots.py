"""The report's pictures, from checkpoints and run dirs (Run): action shares, reward, curves,
accuracy vs compute, the gate against the agent and the β sweep. `training.report` and the
experiments draw with these."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from model.actions import THESIS_ACTIONS, actions_in
from training.evaluation.sweep import plot_sweep, sweep_point
from training.evaluation.tradeoff import plot_tradeoff


@dataclass
class Run:
    label: str
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)  # the run's AgentConfig, when recorded


def find_runs(paths: list[Path]) -> list[Run]:
    runs: list[Run] = []
    for path in map(Path, paths):
        if (path / "history.json").exists() or (path / "metrics.json").exists():
            runs.append(read_run(path))
        elif path.is_dir():
            runs += [read_run(p.parent) for p in sorted(path.glob("*/history.json"))]
    if not runs:
        raise FileNotFoundError(f"no checkpoint or run dir (history/metrics.json) in {paths}")
    return runs


def read_run(path: Path) -> Run:
    def read(name: str) -> Any:
        f = path / name
        return json.loads(f.read_text()) if f.exists() else None

    history = read("history.json") or []
    metrics = read("metrics.json") or {}
    config = read("config.json") or read("state/state.json") or {}
    train = config.get("train", {}).get("config") or config.get("config") or {}
    seed = train.get("seed")
    label = path.name if seed is None else f"{path.name} (seed {seed})"
    return Run(label, history, metrics, train.get("agent", {}))


def plot_action_frequencies(run: Run, path: Path) -> dict[str, Any]:
    """Fig 4.1: the agent's choices on the test set, and per epoch during training."""
    epochs = [r["epoch"] for r in run.history]
    seen = {name for r in run.history for name in _epoch_freq(r)}
    names = actions_in({*seen, *run.metrics.get("action_frequencies", {})})
    names = names or THESIS_ACTIONS
    per_epoch = {name: [_epoch_freq(r).get(name, 0.0) for r in run.history] for name in names}
    last = {n: v[-1] for n, v in per_epoch.items() if v}
    measured = run.metrics.get("action_frequencies") or last
    final = {name: measured.get(name, 0.0) for name in names}  # metrics.json sorts its keys
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.bar(list(final), list(final.values()), color=_colors())
    ax1.set(title="Agent's action frequencies (test)", ylabel="share of inputs", ylim=(0, 1))
    if epochs:
        ax2.stackplot(epochs, *per_epoch.values(), labels=names, colors=_colors(), alpha=0.85)
        ax2.set(title="Greedy action frequencies per epoch", xlabel="epoch", ylim=(0, 1))
        ax2.legend(loc="upper left", fontsize=8)
    _save(fig, path)
    return {"test": final, "epochs": epochs, "per_epoch": per_epoch}


def _epoch_freq(record: dict[str, Any]) -> dict[str, float]:
    test = record.get("test", {})
    return test.get("action_frequencies") or record["train"].get("greedy_action_frequencies", {})


def plot_reward(runs: list[Run], path: Path) -> dict[str, Any]:
    """Fig 4.3a: mean reward per epoch per run (test, greedy agent), with the mean over runs."""
    series = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        # Language-model evaluations report perplexity, not a reward: those runs have no curve.
        pts = [(r["epoch"], r["test"]["mean_reward"]) for r in run.history if has_reward(r)]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", ms=3, alpha=0.7, label=run.label)
            series[run.label] = {"epochs": list(xs), "reward": list(ys)}
    if len(series) >= 2:
        common = sorted(set.intersection(*(set(s["epochs"]) for s in series.values())))
        at = [dict(zip(s["epochs"], s["reward"], strict=True)) for s in series.values()]
        means = [float(np.mean([run_at[e] for run_at in at])) for e in common]
        ax.plot(common, means, color="black", lw=2, label="mean over runs")
        series["mean"] = {"epochs": common, "reward": means}
    ax.set(title="Reward per epoch (test, greedy agent)", xlabel="epoch", ylabel="mean reward")
    ax.legend(fontsize=8)
    _save(fig, path)
    return series


def has_reward(record: dict[str, Any]) -> bool:
    return "mean_reward" in record.get("test", {})


def plot_curves(runs: list[Run], path: Path) -> dict[str, Any]:
    """Training loss and test accuracy (agent and straight) per epoch."""
    out = {}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        ep = [r["epoch"] for r in run.history]
        loss = [r["train"]["loss"] for r in run.history]
        tested = [r for r in run.history if "test" in r]
        acc = [r["test"]["accuracy"] for r in tested]
        ax1.plot(ep, loss, label=run.label)
        ax2.plot([r["epoch"] for r in tested], acc, marker="o", ms=3, label=f"{run.label} agent")
        out[run.label] = {
            "epochs": ep,
            "train_loss": loss,
            "test_epochs": [r["epoch"] for r in tested],
            "test_accuracy": acc,
        }
    ax1.set(title="Training loss", xlabel="epoch")
    ax2.set(title="Test accuracy", xlabel="epoch")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
    _save(fig, path)
    return out


def plot_accuracy_compute(m: dict[str, Any], path: Path) -> dict[str, Any]:
    """Accuracy and mean layer evaluations of each forced action, the agent and the oracle."""
    actions = actions_in(m["forced"])
    names = [*actions, "agent", "oracle"]
    acc = [m["forced"][a]["accuracy"] for a in actions] + [m["accuracy"], m["oracle"]["accuracy"]]
    evals = [m["forced"][a]["mean_layer_evaluations"] for a in actions]
    evals += [m["mean_layer_evaluations"], m["oracle"]["mean_layer_evaluations"]]
    ylim = (max(0.0, min(acc) - 0.05), min(1.0, max(acc) + 0.02))
    _bars_with_compute(names, acc, evals, ("accuracy", ylim), "image", "Accuracy", path)
    return {"names": names, "accuracy": acc, "mean_layer_evaluations": evals}


def plot_perplexity_compute(m: dict[str, Any], path: Path) -> dict[str, Any]:
    """Language models: test perplexity and layer evaluations of each forced action and of the
    agent."""
    actions = actions_in(m["forced"])
    names = [*actions, "agent"]
    ppl = [m["forced"][a]["perplexity"] for a in actions] + [m["perplexity"]]
    evals = [m["forced"][a]["mean_layer_evaluations"] for a in actions]
    evals += [m["mean_layer_evaluations"]]
    ylim = (0.95 * min(ppl), 1.02 * max(ppl))
    axis = ("test perplexity (lower is better)", ylim)
    _bars_with_compute(names, ppl, evals, axis, "sequence", "Perplexity", path)
    return {"names": names, "perplexity": ppl, "mean_layer_evaluations": evals}


def _bars_with_compute(names, values, evals, axis, unit: str, what: str, path: Path) -> None:
    """Side-by-side bars: a quality measure (left axis) and layer evaluations (right axis)."""
    label, ylim = axis
    fig, ax1 = plt.subplots(figsize=(8, 4))
    pos = np.arange(len(names))
    ax1.bar(pos - 0.2, values, 0.4, color="tab:blue", label=label)
    ax1.set(ylim=ylim, ylabel=label)
    ax2 = ax1.twinx()
    ax2.bar(pos + 0.2, evals, 0.4, color="tab:orange", label="layer evaluations")
    ax2.set(ylabel=f"mean layer evaluations / {unit}")
    ax1.set_xticks(pos, names, rotation=20)
    ax1.set_title(f"{what} and compute per action (test)")
    fig.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def plot_gate_vs_agent(m: dict[str, Any], path: Path) -> dict[str, Any]:
    """Accuracy vs compute: confidence-gate sweeps, forced actions, the agent, the oracle."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    curves = {}
    sweeps = m["gate"].get("sweeps_by_action") or {m["gate"]["action"]: m["gate"]["sweep"]}
    for name, sweep in sweeps.items():
        xs = [r["mean_layer_evaluations"] for r in sweep]
        ys = [r["accuracy"] for r in sweep]
        style = "-" if name == m["gate"]["action"] else ":"
        ax.plot(xs, ys, style, marker=".", label=f"gate → {name}")
        curves[name] = {"mean_layer_evaluations": xs, "accuracy": ys}
    for a in actions_in(m["forced"]):
        f = m["forced"][a]
        ax.scatter(f["mean_layer_evaluations"], f["accuracy"], marker="s", s=30)
        ax.annotate(a, (f["mean_layer_evaluations"], f["accuracy"]), fontsize=7)
    ax.scatter(
        m["mean_layer_evaluations"],
        m["accuracy"],
        marker="*",
        s=180,
        color="red",
        label="agent",
        zorder=5,
    )
    o = m["oracle"]
    ax.scatter(
        o["mean_layer_evaluations"], o["accuracy"], marker="^", s=60, color="green", label="oracle"
    )
    ax.set(
        title="Accuracy vs compute (test)",
        xlabel="mean layer evaluations / image",
        ylabel="accuracy",
    )
    ax.legend(fontsize=8)
    _save(fig, path)
    return {
        "gate_curves": curves,
        "agent": {"accuracy": m["accuracy"], "mean_layer_evaluations": m["mean_layer_evaluations"]},
        "oracle": o,
    }


def plot_beta_sweep(runs: list[Run], out: Path) -> dict[str, Any]:
    """Fig 4.3b from separate checkpoints: one point per run, sorted by β."""
    points = sorted((_sweep_point(r) for r in runs), key=lambda q: (q["estimator"], q["beta"]))
    plot_sweep(points, out / "beta_sweep.png")
    plot_tradeoff(
        runs[0].metrics,
        {f"β={q['beta']:g}": (q["mean_layer_evaluations"], q["accuracy"]) for q in points},
        out / "tradeoff.png",
        "Agent per β vs confidence gate (test)",
        unit="input",
    )
    return {"points": points}


def _sweep_point(run: Run) -> dict[str, Any]:
    beta, estimator = run.agent["beta"], run.agent.get("estimator", "self_critical")
    return {"run": run.label, **sweep_point(beta, estimator, run.metrics)}


def _colors() -> list[str]:
    return ["tab:gray", "tab:blue", "tab:orange", "tab:red", "tab:green"]


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
