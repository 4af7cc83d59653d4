"""`python -m training evaluate CHECKPOINT --data-dir DIR [--split test]`.

The command line of training/evaluation/checkpoint_eval.py: evaluates the checkpoint on the
split, prints a summary table, and stores metrics.json in the checkpoint unless --no-write.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from model.actions import actions_in
from training.evaluation.checkpoint_eval import evaluate_checkpoint


def format_summary(m: dict[str, Any]) -> str:
    """A human-readable table of the headline numbers."""
    if "perplexity" in m:
        from training.evaluation.lm_metrics import format_lm_summary

        return format_lm_summary(m)
    lines = [
        f"{m['dataset']} {m['split']} (n={m['n']}): agent accuracy {m['accuracy']:.4f} at "
        f"{m['mean_layer_evaluations']:.2f} layer evaluations/input, converged "
        f"{m['converged_share']:.3f}",
        f"{'':12s} {'agent freq':>10s} {'agent acc':>9s} {'iters':>6s} | "
        f"{'forced acc':>10s} {'evals':>6s} {'iters':>6s}",
    ]
    for name in actions_in(m["forced"]):
        f = m["forced"][name]
        acc, iters = m["accuracy_per_action"][name], m["iterations_per_action"][name]
        lines.append(
            f"{name:12s} {m['action_frequencies'][name]:10.3f} {_fmt(acc):>9s} "
            f"{_fmt(iters, 1):>6s} | {f['accuracy']:10.4f} {f['mean_layer_evaluations']:6.2f} "
            f"{f['mean_iterations']:6.2f}"
        )
    o, g, c = m["oracle"], m["gate"], m["checks"]
    lines += [
        f"oracle (any action right) {o['accuracy']:.4f} at {o['mean_layer_evaluations']:.2f} evals",
        f"confidence gate → {g['action']} at the agent's compute: "
        f"{g['accuracy_at_agent_compute']:.4f}"
        f" (agent − gate {c['agent_minus_gate_accuracy_at_matched_compute']:+.4f}; "
        f"agent − best forced {c['agent_minus_best_forced_accuracy']:+.4f})",
    ]
    return "\n".join(lines)


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data-dir", type=Path)
    # valid: the LM's split; validation: the images a checkpoint's training held out
    p.add_argument("--split", default="test", choices=("train", "valid", "validation", "test"))
    p.add_argument("--dataset", help="override the dataset recorded in the checkpoint")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument("--output", type=Path, help="also write the JSON here")
    p.add_argument("--no-write", action="store_true", help="leave the checkpoint's metrics.json")
    p.add_argument("--json", action="store_true", help="print the full JSON too")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = evaluate_checkpoint(
        args.checkpoint,
        args.data_dir,
        args.split,
        args.dataset,
        args.batch_size,
        args.limit,
        args.device,
        write=not args.no_write,
        output=args.output,
    )
    print(format_summary(metrics))
    if args.json:
        json.dump(metrics, sys.stdout, indent=2, sort_keys=True)
        print()
    return 0
