"""Datasets for training: official-layout CIFAR readers, synthetic data, device augmentation."""

from __future__ import annotations

from pathlib import Path

import torch

from training.data.cifar import LAYOUTS, load_cifar
from training.data.download import ensure_downloaded
from training.data.split import ImageSplit
from training.data.synthetic import synthetic_arrays

DATASETS = (*LAYOUTS, "synthetic")


def load_split(
    dataset: str,
    split: str,
    data_dir: Path | None = None,
    download: bool = False,
    synthetic_size: int = 512,
    n_classes: int = 10,
) -> ImageSplit:
    """One split of `dataset`; "synthetic" makes `synthetic_size` learnable fake images."""
    if dataset == "synthetic":
        seed = 0 if split == "train" else 1
        images, labels = synthetic_arrays(synthetic_size, n_classes, seed)
        classes = tuple(f"class_{i}" for i in range(n_classes))
        return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels).long(), classes)
    if data_dir is None:
        folder = LAYOUTS[dataset].folder
        raise ValueError(f"{dataset} needs --data-dir (the folder holding {folder}/)")
    if download:
        ensure_downloaded(dataset, Path(data_dir))
    return load_cifar(dataset, Path(data_dir), split)


__all__ = ["DATASETS", "ImageSplit", "load_split"]
