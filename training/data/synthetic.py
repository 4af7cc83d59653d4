"""Small learnable synthetic CIFAR-like data, in memory, in the official layouts or as PNG folders.

Used by `--dry-run` and the tests, so neither ever needs the real datasets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.data.cifar import LAYOUTS


def synthetic_arrays(n: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n images uint8 (n, 3, 32, 32) and labels uint8 (n,), balanced over classes.

    Each class is a fixed low-frequency colour pattern plus pixel noise, so a tiny CNN gets
    well above chance in a few steps (a learnable signal makes the fit tests meaningful).
    """
    rng = np.random.default_rng(seed)
    # Per-class template: 4×4 colour grid upsampled to 32×32, (n_classes, 3, 32, 32).
    coarse = np.random.default_rng(1234).uniform(40, 215, size=(n_classes, 3, 4, 4))
    templates = coarse.repeat(8, axis=2).repeat(8, axis=3)
    labels = (np.arange(n) % n_classes).astype(np.uint8)
    rng.shuffle(labels)
    noise = rng.normal(0.0, 25.0, size=(n, 3, 32, 32))
    images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


def write_binary_layout(
    dataset: str, data_dir: Path, n_train: int = 100, n_test: int = 50, seed: int = 0
) -> Path:
    """Writes synthetic data in `dataset`'s official binary layout under data_dir; returns it."""
    layout = LAYOUTS[dataset]
    n_classes = len(layout.default_classes)
    folder = Path(data_dir) / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    train = synthetic_arrays(n_train, n_classes, seed)
    test = synthetic_arrays(n_test, n_classes, seed + 1)
    _write_files(folder, layout.train_files, *train, label_bytes=layout.label_bytes)
    _write_files(folder, layout.test_files, *test, label_bytes=layout.label_bytes)
    (folder / layout.names_file).write_text("\n".join(layout.default_classes) + "\n")
    return Path(data_dir)


def _write_files(
    folder: Path, names: tuple[str, ...], images: np.ndarray, labels: np.ndarray, label_bytes: int
) -> None:
    """Splits the records evenly over `names` (CIFAR-10 has 5 train batches)."""
    for name, idx in zip(names, np.array_split(np.arange(len(labels)), len(names)), strict=True):
        (folder / name).write_bytes(_records(images[idx], labels[idx], label_bytes))


def _records(images: np.ndarray, labels: np.ndarray, label_bytes: int) -> bytes:
    """Records of [coarse byte,] label byte + 3072 planar pixel bytes."""
    head = labels.reshape(-1, 1)
    if label_bytes == 2:  # CIFAR-100: coarse label first; 5 fine classes per coarse class
        head = np.concatenate([head // 5, head], axis=1)
    flat = images.reshape(len(images), -1)
    return np.concatenate([head.astype(np.uint8), flat], axis=1).tobytes()


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("circle", "square", "stripes"),
    n_train: int = 16,
    n_val: int | None = 6,
    seed: int = 0,
) -> Path:
    """root/train/<class>/<i>.png (and root/val/... unless n_val is None) of learnable 32×32
    class patterns; returns root."""
    for split, n in (("train", n_train), ("val", n_val)):
        if n is None:
            continue
        images, labels = synthetic_arrays(n * len(classes), len(classes), seed + (split == "val"))
        for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            folder = Path(root) / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.transpose(1, 2, 0)).save(folder / f"{i:04d}.png")
    return Path(root)
