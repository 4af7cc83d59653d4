"""A checkpoint's calibration set: training images a serving runtime checks itself against.

An optional extra file of the checkpoint (written with `model.checkpoint.add_files`, so the
manifest covers it and `load_checkpoint` verifies it like the weights):

    calibration.safetensors   images uint8 (N, C, H, W) on 0..255, labels int64 (N,)

Pixels are stored raw, as the dataset has them (a quarter of float32's bytes); `normalised`
applies the checkpoint's own preprocessing, the arithmetic the service's image decoder does.
They are *training* images on purpose: a gate that decides what precision serves must not be
tuned on the test set the model is reported on.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from model.checkpoint import CheckpointError, manifest_files

CALIBRATION = "calibration.safetensors"


@dataclass(frozen=True)
class CalibrationSet:
    images: torch.Tensor  # uint8 (N, C, H, W), 0..255
    labels: torch.Tensor  # int64 (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{tuple(self.labels.shape)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to_bytes(self) -> bytes:
        """The file's content, for `add_files(directory, {CALIBRATION: ...})`.

        >>> images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
        >>> data = CalibrationSet(images, torch.tensor([0, 1])).to_bytes()
        >>> from safetensors.torch import load
        >>> sorted(load(data))
        ['images', 'labels']
        """
        return save({"images": self.images.contiguous(), "labels": self.labels.long()})

    def normalised(self, preprocessing: dict[str, Any]) -> torch.Tensor:
        """float32 (N, C, H, W): (pixels / 255 − mean) / std, with the card's mean and std.

        >>> cal = CalibrationSet(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8), torch.zeros(1))
        >>> cal.normalised({"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1.0]}).flatten().tolist()
        [2.0, 1.0, 0.5]
        """
        mean = torch.tensor(preprocessing["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(preprocessing["std"], dtype=torch.float32).view(1, -1, 1, 1)
        return (self.images.float() / 255.0 - mean) / std


def load_calibration(directory: str | Path) -> CalibrationSet | None:
    """The set a checkpoint ships, or None; only a file its manifest lists (and so verifies)."""
    directory = Path(directory)
    if CALIBRATION not in manifest_files(directory):
        return None
    path = directory / CALIBRATION
    try:
        tensors = load_file(str(path))
        return CalibrationSet(tensors["images"], tensors["labels"])
    except (SafetensorError, OSError, KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: not a calibration set: {err}") from err
