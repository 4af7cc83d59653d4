"""Datasets for training: official-layout CIFAR readers, your own image folders, synthetic data,
device augmentation."""

from __future__ import annotations

from pathlib import Path

import torch

from training.data.cifar import LAYOUTS, load_cifar
from training.data.download import ensure_downloaded
from training.data.image_folder import FolderData, ImageFolderError, load_image_folder
from training.data.split import ImageSplit
from training.data.synthetic import synthetic_arrays

IMAGE_FOLDER = "imagefolder"
DATASETS = (*LAYOUTS, IMAGE_FOLDER, "synthetic")


def load_split(
    dataset: str,
    split: str,
    data_dir: Path | None = None,
    download: bool = False,
    synthetic_size: int = 512,
    n_classes: int = 10,
    image_size: int = 32,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> ImageSplit:
    """One split of `dataset`; "synthetic" makes `synthetic_size` learnable fake images;
    "imagefolder" reads data_dir's train/ and val/ ("test" is val) at image_size pixels."""
    if dataset == "synthetic":
        split_seed = 0 if split == "train" else 1
        images, labels = synthetic_arrays(synthetic_size, n_classes, split_seed)
        classes = tuple(f"class_{i}" for i in range(n_classes))
        return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels).long(), classes)
    if data_dir is None:
        folder = LAYOUTS[dataset].folder if dataset in LAYOUTS else "train/<class>"
        raise ValueError(f"{dataset} needs --data-dir (the folder holding {folder}/)")
    if dataset == IMAGE_FOLDER:
        read = load_image_folder(Path(data_dir), image_size, val_fraction, seed)
        return read.train if split == "train" else read.val
    if download:
        ensure_downloaded(dataset, Path(data_dir))
    return load_cifar(dataset, Path(data_dir), split)


__all__ = [
    "DATASETS",
    "IMAGE_FOLDER",
    "FolderData",
    "ImageFolderError",
    "ImageSplit",
    "load_image_folder",
    "load_split",
]
