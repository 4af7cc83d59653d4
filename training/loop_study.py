"""`python -m training loop-study NAME=CHECKPOINT ... --data-dir DIR --out reports/...`.

Compares loop designs trained from one backbone: for each checkpoint the agent, the straight
pass, every forced action, the per-sample oracle and the confidence gate at the agent's
compute (training.evaluation.checkpoint_eval), plus accuracy against a fixed iteration count
for each looped action (the solver run exactly n times, tolerance 0). Writes results.json, a
markdown table (table.md) and accuracy_vs_iterations.png into --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from model.actions import ACTIONS, N_LOOP_ACTIONS, THESIS_ACTIONS
from model.checkpoint import load_checkpoint
from training.data import load_split
from training.data.batches import BatchIterator
from training.evaluation.checkpoint_eval import evaluate_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("designs", nargs="+", help="NAME=CHECKPOINT_DIR, one per design")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--limit", type=int, help="first N test images (default all)")
    p.add_argument("--max-iterations", type=int, default=8)
    p.add_argument("--out", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    results = {}
    for spec in args.designs:
        name, _, path = spec.partition("=")
        results[name] = study(Path(path), args.data_dir, args.limit, args.max_iterations)
        print(f"{name}: {_row(name, results[name])}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "table.md").write_text(table(results) + "\n")
    plot(results, args.out / "accuracy_vs_iterations.png")
    print(table(results))
    return 0


def study(checkpoint: Path, data_dir: Path, limit: int | None, max_n: int) -> dict[str, Any]:
    metrics = evaluate_checkpoint(checkpoint, data_dir, limit=limit, write=False)
    return {
        "checkpoint": str(checkpoint),
        "n": metrics["n"],
        "agent": {
            "accuracy": metrics["accuracy"],
            "mean_layer_evaluations": metrics["mean_layer_evaluations"],
            "action_frequencies": metrics["action_frequencies"],
        },
        "forced": metrics["forced"],
        "oracle": metrics["oracle"],
        "gate_at_agent_compute": metrics["gate"]["best_accuracy_at_agent_compute"],
        "accuracy_vs_iterations": iteration_sweep(checkpoint, data_dir, limit, max_n),
    }


@torch.no_grad()
def iteration_sweep(
    checkpoint: Path, data_dir: Path, limit: int | None, max_n: int
) -> dict[str, list[float]]:
    """{action: [accuracy after exactly n iterations for n = 1..max_n]} for looped actions."""
    ckpt = load_checkpoint(checkpoint)
    net = ckpt.net.eval()
    split = load_split("cifar10" if len(ckpt.classes) == 10 else "cifar100", "test", data_dir)
    split = split.subset(limit) if limit else split
    pre = ckpt.preprocessing
    it = BatchIterator(split, 500, torch.tensor(pre["mean"]), torch.tensor(pre["std"]), "cpu")
    batches = list(it.batches(0))
    straights = [(net.straight(x), y) for x, y in batches]
    base = net.config
    sweep: dict[str, list[float]] = {}
    for action in range(1, N_LOOP_ACTIONS):
        accs = []
        for n in range(1, max_n + 1):
            net.config = dataclasses.replace(base, tol=0.0, max_iter=n)  # exactly n steps
            right = sum(
                int((net.recompute(s, torch.full_like(y, action)).logits.argmax(1) == y).sum())
                for s, y in straights
            )
            accs.append(right / len(split))
        sweep[ACTIONS[action]] = accs
    net.config = base
    return sweep


def _row(name: str, r: dict[str, Any]) -> str:
    f = r["forced"]
    cells = [name, _pct(f["straight"]["accuracy"])]
    cells += [
        _pct(f[a]["accuracy"]) + f" ({f[a]['mean_layer_evaluations']:.1f})"
        for a in THESIS_ACTIONS[1:]
    ]
    cells += [
        _pct(r["oracle"]["accuracy"]),
        _pct(r["gate_at_agent_compute"]),
        _pct(r["agent"]["accuracy"]) + f" ({r['agent']['mean_layer_evaluations']:.2f})",
    ]
    return " | ".join(cells)


def table(results: dict[str, Any]) -> str:
    head = ["design", "straight (3)", *(f"{a} (evals)" for a in THESIS_ACTIONS[1:])]
    head += ["oracle", "gate at agent's compute", "agent (evals)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + _row(name, r) + " |" for name, r in results.items()]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, N_LOOP_ACTIONS - 1, figsize=(12, 3.6), sharey=True)
    for ax, action in zip(axes, THESIS_ACTIONS[1:], strict=True):
        for name, r in results.items():
            accs = r["accuracy_vs_iterations"][action]
            line = ax.plot(range(1, len(accs) + 1), [100 * a for a in accs], marker="o", label=name)
            ax.axhline(100 * r["forced"]["straight"]["accuracy"], ls=":", color=line[0].get_color())
        ax.set_title(f"{action} (dotted: straight)")
        ax.set_xlabel("fixed-point iterations")
    axes[0].set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"
