"""Image datasets → what a fit needs (training/data/fit_data.py); text goes to data/text."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data import IMAGE_FOLDER, ImageSplit, load_image_folder, load_split
from training.data.batches import BatchIterator, Shard
from training.data.fit_data import PreparedData
from training.data.holdout import split_holdout
from training.data.image_folder import FOLDER_REPORT, folder_report
from training.data.stats import channel_stats, image_preprocessing
from training.data.text import TEXT_DATASETS

TOKENIZER_CACHE = "tokenizer.json"  # in the run dir: a resumed text run keeps its token ids


@dataclass(frozen=True)
class Data:
    train: ImageSplit
    test: ImageSplit  # the split evaluated: the test split, or the held-out validation images
    mean: list[float]
    std: list[float]
    extra_files: dict[str, bytes] = field(default_factory=dict)  # e.g. the folder's data.json
    eval_split: str = "test"


def load_data(cfg: TrainConfig) -> Data:
    d = cfg.data
    if d.dataset == IMAGE_FOLDER:
        return _load_folder(cfg)
    kw = {
        "data_dir": d.data_dir,
        "download": d.download,
        "synthetic_size": d.synthetic_size,
        "n_classes": d.synthetic_classes,
    }
    train = load_split(d.dataset, "train", **kw)
    if d.validation:
        train, test = split_holdout(train, d.validation)
    else:
        test = load_split(d.dataset, "test", **kw)
    if d.train_subset:
        train = train.subset(d.train_subset)
    if d.test_subset:
        test = test.subset(d.test_subset)
    mean, std = channel_stats(train)
    return Data(train, test, mean, std, eval_split="validation" if d.validation else "test")


def _load_folder(cfg: TrainConfig) -> Data:
    """Your image folder, read once; skipped files are reported here and in data.json."""
    d = cfg.data
    if d.data_dir is None:
        raise ValueError("imagefolder needs --data-dir (the folder holding train/<class>/)")
    size = int(cfg.model.get("image_size", 32))
    read = load_image_folder(Path(d.data_dir), size, d.val_fraction, cfg.seed)
    for skipped in read.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr, flush=True)
    train = read.train.subset(d.train_subset) if d.train_subset else read.train
    val = read.val.subset(d.test_subset) if d.test_subset else read.val
    if len(train) < cfg.optim.batch_size:
        raise ValueError(
            f"{d.data_dir}: {len(train)} training images do not fill one batch of "
            f"{cfg.optim.batch_size}; add images or lower --batch-size"
        )
    report = folder_report(read, Path(d.data_dir), size)
    mean, std = channel_stats(train)
    return Data(train, val, mean, std, {FOLDER_REPORT: report}, eval_split="validation")


def _start_tokenizer(cfg: TrainConfig) -> Path | None:
    """The --init-from checkpoint's tokenizer file, if it has one."""
    if not cfg.init_from:
        return None
    pre = load_checkpoint(cfg.init_from).preprocessing
    return Path(cfg.init_from) / pre["tokenizer"] if pre.get("tokenizer") else None


def prepare_data(
    cfg: TrainConfig,
    device: torch.device,
    shard: Shard,
    run_dir: Path | None = None,
    fresh: bool = False,
) -> PreparedData:
    """The dataset's batches and checkpoint metadata: images here, text in data/text/.

    shard: this process' share of the training batches (evaluation always runs everything)."""
    if cfg.data.dataset in TEXT_DATASETS:
        from training.data.text.prepare import prepare_text

        cache = run_dir / TOKENIZER_CACHE if run_dir else None
        start = _start_tokenizer(cfg)
        return prepare_text(cfg, device, shard, cache, fresh, start)
    data = load_data(cfg)
    return PreparedData(
        train_it=make_batches(cfg, data.train, data, device, shard),
        test_it=make_batches(cfg, data.test, data, device, None),
        classes=data.train.classes,
        model={"arch": "cnn"},
        preprocessing=image_preprocessing(data.mean, data.std, cfg.model.get("image_size", 32)),
        eval_split=data.eval_split,
        extra_files=data.extra_files,
    )


def make_batches(
    cfg: TrainConfig, split: ImageSplit, data: Data, device: torch.device, shard: Shard | None
) -> BatchIterator:
    """Training batches (this shard's, augmented) or, with shard None, evaluation batches."""
    train = shard is not None
    return BatchIterator(
        split=split,
        batch_size=cfg.optim.batch_size if train else cfg.eval_batch_size,
        mean=torch.tensor(data.mean, device=device),
        std=torch.tensor(data.std, device=device),
        device=device,
        train=train,
        pad=cfg.data.pad,
        flip=cfg.data.flip,
        seed=cfg.seed,
        # Evaluation runs the full split on every rank: no collectives, identical numbers.
        shard=shard or Shard(),
        channels_last=cfg.channels_last,
        flip_mode=cfg.data.flip_mode,
    )
