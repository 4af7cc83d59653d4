"""Your own images: `DIR/train/<class>/*` and `DIR/val/<class>/*`, one folder per class.

Class names are the train/ folder names, sorted (label i = the i-th name). Without val/, a
seeded share of each class's training images is held out instead. Every file is decoded as the
service decodes it (training/data/image_decode.py) at the model's input size. A file that is not
a readable image is skipped and reported (path and reason), never fatal; a dataset that leaves
fewer than two classes, or a class without a single image, is refused with a message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.data.image_decode import ACCEPTED, decode_pixels
from training.data.split import ImageSplit

FOLDER_REPORT = "data.json"  # the checkpoint's record of the folder: counts, skipped files


class ImageFolderError(ValueError):
    """The folder cannot make a classification dataset (named, with what to change)."""


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class FolderData:
    train: ImageSplit
    val: ImageSplit
    skipped: tuple[SkippedFile, ...]
    val_from_train: bool  # True: no val/ folder, val was held out of train/


def load_image_folder(
    data_dir: Path, size: int = 32, val_fraction: float = 0.2, seed: int = 0
) -> FolderData:
    """Reads DIR/train (and DIR/val when present) into uint8 (N, 3, size, size) splits."""
    root = Path(data_dir)
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise ImageFolderError(f"{root}: expected {train_dir}/<class>/<image files>")
    classes = class_names(train_dir)
    skipped: list[SkippedFile] = []
    train = _read_split(train_dir, classes, size, skipped)
    _refuse_empty_classes(train, classes, train_dir)
    if val_dir.is_dir():
        unknown = sorted(set(class_names(val_dir, minimum=0)) - set(classes))
        if unknown:
            raise ImageFolderError(f"{val_dir}: classes {unknown} are not among train/'s")
        val = _read_split(val_dir, classes, size, skipped)
        return FolderData(train, val, tuple(skipped), val_from_train=False)
    train, val = hold_out(train, val_fraction, seed)
    return FolderData(train, val, tuple(skipped), val_from_train=True)


def folder_report(data: FolderData, root: Path, size: int) -> bytes:
    """data.json: image size, images per class in each split, and every skipped file (paths
    relative to the data folder, so the checkpoint names no machine's directories)."""

    def counts(split: ImageSplit) -> dict[str, int]:
        per_class = torch.bincount(split.labels, minlength=len(split.classes)).tolist()
        return dict(zip(split.classes, per_class, strict=True))

    report = {
        "dataset": "imagefolder",
        "image_size": [size, size],
        "val_from_train": data.val_from_train,
        "train": counts(data.train),
        "val": counts(data.val),
        "skipped": [{"path": _relative(s.path, root), "reason": s.reason} for s in data.skipped],
    }
    return (json.dumps(report, indent=1) + "\n").encode()


def class_names(folder: Path, minimum: int = 2) -> tuple[str, ...]:
    names = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and _visible(p)))
    if len(names) < minimum:
        found = f"only {names[0]!r}" if names else "none"
        raise ImageFolderError(
            f"{folder}: a classifier needs at least {minimum} class folders, found {found}"
        )
    return names


def hold_out(split: ImageSplit, fraction: float, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """Per class, a seeded `fraction` (at least one image when the class has two) → val."""
    if not 0.0 < fraction < 1.0:
        raise ImageFolderError(f"val_fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    labels = split.labels.numpy()
    val_rows: list[np.ndarray] = []
    for label in range(len(split.classes)):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_val = max(1, round(len(rows) * fraction)) if len(rows) > 1 else 0
        val_rows.append(rows[:n_val])
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[np.concatenate(val_rows)] = True
    train_idx = torch.from_numpy(np.flatnonzero(~is_val))
    val_idx = torch.from_numpy(rng.permutation(np.flatnonzero(is_val)))
    return _take(split, train_idx), _take(split, val_idx)


def _read_split(
    folder: Path, classes: tuple[str, ...], size: int, skipped: list[SkippedFile]
) -> ImageSplit:
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in _files(folder / name):
            pixels = _decode(path, size, skipped)
            if pixels is not None:
                images.append(pixels)
                labels.append(label)
    stacked = np.stack(images) if images else np.zeros((0, 3, size, size), np.uint8)
    # A fixed shuffle: the first n (train_subset) hold every class, as in the CIFAR files.
    order = np.random.default_rng(0).permutation(len(labels))
    return ImageSplit(
        torch.from_numpy(stacked[order]),
        torch.tensor(labels, dtype=torch.long)[torch.from_numpy(order)],
        classes,
    )


def _files(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _visible(p))


def _decode(path: Path, size: int, skipped: list[SkippedFile]) -> np.ndarray | None:
    try:
        data = path.read_bytes()
    except OSError as exc:  # permissions, a dangling link, a directory
        skipped.append(SkippedFile(str(path), f"unreadable: {exc.strerror or exc}"))
        return None
    try:
        return decode_pixels(data, size, size)
    except Exception as exc:  # Pillow raises many types (OSError among them) on bad bytes
        reason = f"not a decodable {ACCEPTED} image ({type(exc).__name__})"
        skipped.append(SkippedFile(str(path), reason))
        return None


def _refuse_empty_classes(split: ImageSplit, classes: tuple[str, ...], folder: Path) -> None:
    counts = torch.bincount(split.labels, minlength=len(classes))
    empty = [name for name, n in zip(classes, counts.tolist(), strict=True) if n == 0]
    if empty:
        raise ImageFolderError(
            f"{folder}: class folders {empty} hold no readable image; add images or remove them"
        )


def _take(split: ImageSplit, idx: torch.Tensor) -> ImageSplit:
    return ImageSplit(split.images[idx], split.labels[idx], split.classes)


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")  # .DS_Store, editors' swap files
