"""Fig 4.3a: the reward per epoch for several seeds.

Two series per seed: the test reward of the greedy agent (every epoch, from the first: during
the backbone phase the untrained agent picks straight, so it tracks the backbone), and the
training reward of the sampled actions (agent and joint phases). The test figure is
training.evaluation.plots' reward plot (per seed and their mean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.config import merge
from training.evaluation.plots import Run, plot_reward
from training.experiments import arms, thesis
from training.experiments import markdown as md
from training.experiments.context import Context
from training.experiments.runner import train_arm

TITLE = "Fig 4.3a — reward per epoch over seeds"


def run(ctx: Context) -> dict[str, Any]:
    runs = []
    for seed in ctx.params["seeds"]:
        agent = train_arm(ctx, arms.dynalay(), merge(ctx.recipe.train, {"seed": seed}))
        runs.append(Run(f"seed {seed}", agent.history, agent.metrics))
    test = plot_reward(runs, ctx.figure("reward"))
    train = {r.label: _train_reward(r.history) for r in runs}
    plot_train_reward(train, ctx.figure("train_reward"))
    return {
        "seeds": ctx.params["seeds"],
        "test_reward": test,
        "train_reward": train,
        "phases": [r["phase"] for r in runs[0].history],
        "final": {
            r.label: {"accuracy": r.metrics["accuracy"], "mean_reward": r.metrics["mean_reward"]}
            for r in runs
        },
    }


def _train_reward(history: list[dict[str, Any]]) -> dict[str, list]:
    pts = [(r["epoch"], r["train"]["reward"]) for r in history if "reward" in r["train"]]
    return {"epochs": [e for e, _ in pts], "reward": [v for _, v in pts]}


def plot_train_reward(series: dict[str, dict[str, list]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, s in series.items():
        ax.plot(s["epochs"], s["reward"], marker="o", ms=3, label=label)
    ax.set(title="Reward per epoch (training, sampled actions)", xlabel="epoch", ylabel="reward")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(doc: dict[str, Any]) -> list[str]:
    res = doc["results"]
    seeds = {k: v for k, v in res["test_reward"].items() if k != "mean"}
    first = [s["reward"][0] for s in seeds.values() if s["reward"]]
    last = [s["reward"][-1] for s in seeds.values() if s["reward"]]
    tail = [s["reward"][-3:] for s in seeds.values() if len(s["reward"]) >= 3]
    spread = float(np.mean([np.ptp(t) for t in tail])) if tail else None
    rows = [
        [label, md.num(v["mean_reward"], 3), md.pct(v["accuracy"])]
        for label, v in res["final"].items()
    ]
    return [
        *md.table(["run", "final test reward", "final test accuracy"], rows),
        "",
        f"Test reward (greedy agent) from {md.num(float(np.mean(first)), 3)} after the first "
        f"epoch to {md.num(float(np.mean(last)), 3)} at the end (mean over "
        f"{len(seeds)} seeds); over the last three epochs it moves by "
        f"{md.num(spread, 3)} on average per seed.",
        "",
        f"**Against the thesis**: it reports that {thesis.FIG_43A}; the curves above show "
        "whether and when that happens here (the phase of each epoch is in results.json).",
    ]
