"""Accuracy against multiply-adds: forced iteration budgets, free stopping rules and the agent.

`python scripts/budget_curves.py CHECKPOINT --data-dir data --split validation --out DIR`

For every image of the split, every looped action's answer after 0..--budgets − 1 loop
iterations (tol 0, so exactly that many; 0 is the straight pass, as the API's `iterations`
counts) and `tta`'s, with what each costs (the checkpoint's own `DynaLayNet.action_macs`,
counted by torch's flop counter).
From those per-image answers, without running anything again:

- forced budgets: every image through action k at n iterations;
- the confidence gate: loop_all at n iterations when the straight pass' top probability is
  below a threshold, one pass otherwise (every threshold × budget; the upper envelope is
  drawn);
- the prediction-change rule: loop_all until the prediction stays the same for `patience`
  iterations running (or the largest budget), on the images the gate sends; each iteration
  then pays the head too;
- the agent, as `training evaluate` measures it on the same split (its own max_iter).

Writes DIR/budget_curves.json and DIR/accuracy_vs_macs.png; --compare NAME=METRICS.json adds
other models' agents to the picture (their metrics must carry `mean_macs`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from model.actions import ACTIONS, N_LAYERS, TTA
from model.checkpoint import load_checkpoint
from model.network import ModuleParts, anytime_logits, tta_logits
from training.data import load_split
from training.data.augment import normalize
from training.data.holdout import split_holdout
from training.evaluation.checkpoint_eval import evaluate_checkpoint

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 1.01)


def images_of(checkpoint_dir: Path, data_dir: Path, split: str, limit: int | None):
    ckpt = load_checkpoint(checkpoint_dir)
    dataset = ckpt.train.get("config", {}).get("data", {}).get("dataset", "cifar10")
    if split == "validation":
        held = ckpt.train.get("config", {}).get("data", {}).get("validation") or 5000
        _, images = split_holdout(load_split(dataset, "train", data_dir), held)
    else:
        images = load_split(dataset, split, data_dir)
    return ckpt, images.subset(limit) if limit else images


@torch.no_grad()
def per_image(ckpt, images, budgets: int) -> dict[str, np.ndarray]:
    """Per image: correct (N, budgets) per looped action, straight top probability, tta."""
    net = ckpt.net.eval()
    parts = ModuleParts(net)
    mean = torch.tensor(ckpt.preprocessing["mean"])
    std = torch.tensor(ckpt.preprocessing["std"])
    out: dict[str, list] = {name: [] for name in (*ACTIONS[1 : N_LAYERS + 1], "top", "preds")}
    out["tta"] = []
    for chunk, y in zip(images.images.split(500), images.labels.split(500), strict=True):
        x = normalize(chunk, mean, std)
        for k in range(1, N_LAYERS + 1):
            exits = anytime_logits(parts, x, budgets, action=k)
            out[ACTIONS[k]].append(torch.stack([e.argmax(1) == y for e in exits], 1))
            if k == N_LAYERS:
                out["preds"].append(torch.stack([e.argmax(1) for e in exits], 1))
                out["top"].append(exits[0].float().softmax(1).amax(1))
        if net.n_actions > TTA:
            straight = anytime_logits(parts, x, 1)[0]
            out["tta"].append(tta_logits(parts, x, straight).argmax(1) == y)
    return {k: torch.cat(v).numpy() for k, v in out.items() if v}


def macs_table(net, budgets: int) -> dict[str, list[float]]:
    """Multiply-adds of one image per action and budget (tta: one number)."""
    table = {}
    for k in range(1, N_LAYERS + 1):
        n = torch.arange(budgets)  # loop iterations after the straight pass
        table[ACTIONS[k]] = net.action_macs.per_sample(torch.full_like(n, k), n).tolist()
    one = torch.zeros(1, dtype=torch.long)
    table["straight"] = [float(net.action_macs.per_sample(one, one))]
    if net.n_actions > TTA:
        table["tta"] = [float(net.action_macs.per_sample(one + TTA, one))]
    return table


def forced_curves(data, macs) -> dict[str, list[dict]]:
    return {
        name: [
            {"iterations": b, "accuracy": float(data[name][:, b].mean()), "macs": macs[name][b]}
            for b in range(data[name].shape[1])
        ]
        for name in ACTIONS[1 : N_LAYERS + 1]
    }


def gate_points(data, macs) -> list[dict]:
    """loop_all at budget n below a confidence threshold, one pass above it."""
    name, straight = ACTIONS[N_LAYERS], data[ACTIONS[N_LAYERS]][:, 0]
    points = []
    for t in THRESHOLDS:
        loop = data["top"] < t
        for b in range(1, data[name].shape[1]):
            correct = np.where(loop, data[name][:, b], straight)
            cost = np.where(loop, macs[name][b], macs["straight"][0])
            points.append(_point(correct, cost, threshold=t, iterations=b))
    return points


def change_points(data, macs, head_macs: float) -> list[dict]:
    """Stop when the prediction held for `patience` iterations (on images the gate sends)."""
    name = ACTIONS[N_LAYERS]
    preds, correct_at = data["preds"], data[name]
    budgets = preds.shape[1]
    points = []
    for patience in (1, 2, 3):
        stop = np.full(len(preds), budgets - 1)
        for i in range(len(preds)):
            held = 0
            for b in range(1, budgets):
                held = held + 1 if preds[i, b] == preds[i, b - 1] else 0
                if held >= patience:
                    stop[i] = b
                    break
        rows = np.arange(len(preds))
        looped_right = correct_at[rows, stop]
        # every iteration also ran the head to read its prediction
        looped_cost = np.asarray(macs[name])[stop] + head_macs * stop
        for t in THRESHOLDS:
            loop = data["top"] < t
            correct = np.where(loop, looped_right, correct_at[:, 0])
            cost = np.where(loop, looped_cost, macs["straight"][0])
            points.append(_point(correct, cost, threshold=t, patience=patience))
    return points


def _point(correct, cost, **what) -> dict:
    return {**what, "accuracy": float(np.mean(correct)), "macs": float(np.mean(cost))}


def envelope(points: list[dict]) -> list[dict]:
    """The points no other point beats at equal or lower multiply-adds (ascending MACs)."""
    best, out = -1.0, []
    for p in sorted(points, key=lambda p: (p["macs"], -p["accuracy"])):
        if p["accuracy"] > best:
            out.append(p)
            best = p["accuracy"]
    return out


def at_macs(curve: list[dict], macs: float) -> float:
    """A curve's accuracy interpolated at `macs` (clamped at its ends)."""
    xs = [p["macs"] for p in curve]
    return float(np.interp(macs, xs, [p["accuracy"] for p in curve]))


def plot(result: dict, compare: dict[str, dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    scale = 1e6
    for name, curve in result["forced"].items():
        ax.plot(
            [p["macs"] / scale for p in curve],
            [100 * p["accuracy"] for p in curve],
            marker="o",
            ms=3,
            label=f"forced {name}, 0..{len(curve) - 1} iterations",
        )
    for key, label in (
        ("gate_envelope", "confidence gate"),
        ("change_envelope", "prediction-change rule"),
    ):
        curve = result[key]
        ax.plot(
            [p["macs"] / scale for p in curve],
            [100 * p["accuracy"] for p in curve],
            ls="--",
            label=label,
        )
    if "tta" in result["macs"]:
        ax.scatter(
            [result["macs"]["tta"][0] / scale],
            [100 * result["tta_accuracy"]],
            marker="s",
            label="forced tta",
        )
    agent = result["agent"]
    ax.scatter(
        [agent["mean_macs"] / scale],
        [100 * agent["accuracy"]],
        marker="*",
        s=160,
        color="black",
        label="agent",
        zorder=5,
    )
    for name, m in compare.items():
        ax.scatter(
            [m["mean_macs"] / scale], [100 * m["accuracy"]], marker="X", s=90, label=name, zorder=5
        )
    ax.set(
        xlabel="mean multiply-adds per image (M)",
        ylabel=f"{result['split']} accuracy (%)",
        title=f"{result['checkpoint']}: {result['split']}, n={result['n']}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--split", default="validation", choices=("validation", "test"))
    p.add_argument("--budgets", type=int, default=10)
    p.add_argument("--limit", type=int)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--compare", nargs="*", default=[], help="NAME=METRICS.json (with mean_macs)")
    args = p.parse_args(argv)
    ckpt, images = images_of(args.checkpoint, args.data_dir, args.split, args.limit)
    data = per_image(ckpt, images, args.budgets)
    macs = macs_table(ckpt.net, args.budgets)
    head = ckpt.net.action_macs.finish[N_LAYERS - 1].fixed  # loop_all's finish is the head
    agent = evaluate_checkpoint(
        args.checkpoint, args.data_dir, split=args.split, limit=args.limit, write=False
    )
    gate, change = gate_points(data, macs), change_points(data, macs, head)
    result = {
        "checkpoint": f"{ckpt.name} {ckpt.version}",
        "split": args.split,
        "n": len(images),
        "macs": macs,
        "forced": forced_curves(data, macs),
        "tta_accuracy": float(data["tta"].mean()) if "tta" in data else None,
        "gate": gate,
        "gate_envelope": envelope(gate),
        "change": change,
        "change_envelope": envelope(change),
        "agent": {
            "accuracy": agent["accuracy"],
            "mean_macs": agent["mean_macs"],
            "action_frequencies": agent["action_frequencies"],
            "max_iter": ckpt.config.max_iter,
        },
    }
    result["agent"]["gate_accuracy_at_agent_macs"] = at_macs(
        result["gate_envelope"], agent["mean_macs"]
    )
    result["agent"]["change_accuracy_at_agent_macs"] = at_macs(
        result["change_envelope"], agent["mean_macs"]
    )
    compare = {}
    for spec in args.compare:
        name, _, path = spec.partition("=")
        compare[name] = json.loads(Path(path).read_text())
    result["compare"] = {
        n: {"accuracy": m["accuracy"], "mean_macs": m["mean_macs"]} for n, m in compare.items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "budget_curves.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, compare, args.out / "accuracy_vs_macs.png")
    for name, curve in result["forced"].items():
        print(name, " ".join(f"{100 * p['accuracy']:.2f}@{p['macs'] / 1e6:.0f}M" for p in curve))
    print("agent", json.dumps(result["agent"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
