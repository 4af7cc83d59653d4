"""Readers for the official CIFAR-10 / CIFAR-100 *binary* layouts (numpy only, no pickle).

CIFAR-10  (`cifar-10-batches-bin/`): data_batch_1..5.bin, test_batch.bin; each record is
          1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major 32×32);
          class names in batches.meta.txt.
CIFAR-100 (`cifar-100-binary/`): train.bin, test.bin; each record is 1 coarse byte,
          1 fine byte + 3072 pixel bytes; names in fine_label_names.txt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.data.classes import CIFAR10_CLASSES, CIFAR100_CLASSES
from training.data.split import ImageSplit

PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class BinaryLayout:
    """Where a dataset's files live and how its records are laid out."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_bytes: int  # bytes before the pixels in each record
    label_offset: int  # which of those bytes is the label we train on
    names_file: str
    default_classes: tuple[str, ...]


LAYOUTS: dict[str, BinaryLayout] = {
    "cifar10": BinaryLayout(
        folder="cifar-10-batches-bin",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_files=("test_batch.bin",),
        label_bytes=1,
        label_offset=0,
        names_file="batches.meta.txt",
        default_classes=CIFAR10_CLASSES,
    ),
    "cifar100": BinaryLayout(
        folder="cifar-100-binary",
        train_files=("train.bin",),
        test_files=("test.bin",),
        label_bytes=2,
        label_offset=1,  # fine label
        names_file="fine_label_names.txt",
        default_classes=CIFAR100_CLASSES,
    ),
}


def dataset_folder(dataset: str, data_dir: Path) -> Path:
    """The layout folder: accepts DIR (holding the folder) or the folder itself."""
    layout = _layout(dataset)
    data_dir = Path(data_dir)
    return data_dir if data_dir.name == layout.folder else data_dir / layout.folder


def read_records(path: Path, label_bytes: int, label_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads one binary file → images uint8 (N, 3, 32, 32), labels uint8 (N,)."""
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + PIXELS
    if raw.size == 0 or raw.size % record:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte records")
    rows = raw.reshape(-1, record)
    # Pixels are channel-planar (R plane, G plane, B plane), i.e. already C, H, W.
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), rows[:, label_offset].copy()


def read_classes(folder: Path, layout: BinaryLayout) -> tuple[str, ...]:
    path = folder / layout.names_file
    if not path.exists():
        return layout.default_classes
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(names) != len(layout.default_classes):
        expected = len(layout.default_classes)
        raise ValueError(f"{path}: {len(names)} class names, expected {expected}")
    return names


def load_cifar(dataset: str, data_dir: Path, split: str) -> ImageSplit:
    """Loads `split` ("train" | "test") of `dataset` ("cifar10" | "cifar100") from data_dir."""
    layout = _layout(dataset)
    folder = dataset_folder(dataset, data_dir)
    files = {"train": layout.train_files, "test": layout.test_files}.get(split)
    if files is None:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    missing = [f for f in files if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: missing {', '.join(missing)} in {folder} — expected the official binary "
            f"layout ({layout.folder}/); pass --data-dir or --download"
        )
    parts = [read_records(folder / f, layout.label_bytes, layout.label_offset) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    classes = read_classes(folder, layout)
    if labels.max() >= len(classes):
        raise ValueError(f"{folder}: label {labels.max()} out of range for {len(classes)} classes")
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels), classes)


def _layout(dataset: str) -> BinaryLayout:
    if dataset not in LAYOUTS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(LAYOUTS)}")
    return LAYOUTS[dataset]
