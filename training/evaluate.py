"""`python -m training evaluate CHECKPOINT --data-dir DIR [--split test]`.

Loads a checkpoint with the model core's loader, runs the agent path and every forced action
over the split, and reports agent / forced / oracle / confidence-gate numbers (metrics.py).
The JSON is stored as the checkpoint's metrics.json (model.checkpoint.write_metrics) unless
--no-write, and also at --output when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from model.actions import actions_in
from model.checkpoint import load_checkpoint, write_metrics
from training.config import AgentConfig, TrainConfig
from training.data import load_split
from training.data.batches import BatchIterator
from training.data.holdout import VAL_SIZE, split_holdout
from training.evaluation.collect import collect
from training.evaluation.metrics import full_metrics
from training.evaluation.reward import cost_normalizer
from training.trainer.distributed import resolve_device


def evaluate_checkpoint(
    checkpoint: Path,
    data_dir: Path | None = None,
    split: str = "test",
    dataset: str | None = None,
    batch_size: int = 500,
    limit: int | None = None,
    device: str = "auto",
    write: bool = True,
    output: Path | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, device=dev)
    train_cfg = _train_config(ckpt.train)
    data = train_cfg.data
    dataset = dataset or data.dataset
    run = _evaluate_text if ckpt.preprocessing.get("kind") in ("text", "lm") else _evaluate_images
    metrics = run(ckpt, train_cfg, dataset, data_dir, split, batch_size, limit, dev)
    metrics.update(
        {
            "checkpoint": {"name": ckpt.name, "version": ckpt.version},
            "dataset": dataset,
            "split": split,
            "timing": {
                "evaluation_seconds": round(time.perf_counter() - started, 2),
                "device": str(dev),
            },
        }
    )
    if write:
        write_metrics(checkpoint, metrics)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def _evaluate_images(ckpt, train_cfg, dataset, data_dir, split, batch_size, limit, dev):
    data = train_cfg.data
    images = load_split(
        dataset,
        "train" if split == "validation" else split,
        data_dir=data_dir,
        synthetic_size=data.synthetic_size,
        n_classes=data.synthetic_classes,
        image_size=ckpt.config.image_size,  # imagefolder: its val split as the fit held it out
        val_fraction=data.val_fraction,
        seed=train_cfg.seed,
    )
    if split == "validation":  # the images the checkpoint's training held out
        images = split_holdout(images, data.validation or VAL_SIZE)[1]
    if limit:
        images = images.subset(limit)
    if tuple(images.classes) != tuple(ckpt.classes) and dataset != "synthetic":
        raise ValueError(f"{ckpt.directory}: classes {ckpt.classes[:3]}… do not match {dataset}'s")
    pre = ckpt.preprocessing
    it = BatchIterator(
        split=images,
        batch_size=batch_size,
        mean=torch.tensor(pre["mean"], device=dev),
        std=torch.tensor(pre["std"], device=dev),
        device=dev,
    )
    return _classification_metrics(ckpt, train_cfg, it.batches(0))


def _evaluate_text(ckpt, train_cfg, dataset, data_dir, split, batch_size, limit, dev):
    """IMDB with the checkpoint's own tokenizer; WikiText-2 with its vocabulary."""
    from training.data.text.batches import TextBatchIterator
    from training.data.text.prepare import checkpoint_split
    from training.evaluation.lm_metrics import lm_metrics

    if data_dir is None:
        raise ValueError(f"{dataset} needs --data-dir")
    tokens = checkpoint_split(ckpt, dataset, Path(data_dir), split, limit)
    batches = TextBatchIterator(tokens, batch_size, dev).batches(0)
    if ckpt.config.task == "lm":
        return lm_metrics(ckpt.net, batches, forced=True)
    return _classification_metrics(ckpt, train_cfg, batches)


def _classification_metrics(ckpt, train_cfg: TrainConfig, batches) -> dict[str, Any]:
    outcomes = collect(ckpt.net, batches, forced=True)
    a = train_cfg.agent
    normalizer = cost_normalizer(a, ckpt.net)
    return full_metrics(outcomes, a.alpha, a.beta, normalizer, cost=a.cost)


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


def _train_config(train: dict[str, Any]) -> TrainConfig:
    """The training config stored in the checkpoint (defaults if absent or foreign)."""
    try:
        return TrainConfig.from_dict(train.get("config", {}))
    except (TypeError, ValueError):
        return TrainConfig(agent=AgentConfig())


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
