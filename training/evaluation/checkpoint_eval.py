"""A checkpoint evaluated on a split: what `python -m training evaluate` runs (its command line
is training/evaluate_command.py).

Loads a checkpoint with the model core's loader, runs the agent path and every forced action
over the split, and reports agent / forced / oracle / confidence-gate numbers (metrics.py).
The JSON is stored as the checkpoint's metrics.json (model.checkpoint.write_metrics) unless
--no-write, and also at --output when given.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

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


def _train_config(train: dict[str, Any]) -> TrainConfig:
    """The training config stored in the checkpoint (defaults if absent or foreign)."""
    try:
        return TrainConfig.from_dict(train.get("config", {}))
    except (TypeError, ValueError):
        return TrainConfig(agent=AgentConfig())
