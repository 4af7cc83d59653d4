"""The in-memory dataset split every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageSplit:
    """One split of an image-classification dataset, kept as compact uint8 tensors.

    images: uint8 (N, 3, H, W), 0..255 — normalised per batch on the device, so a whole
    CIFAR train set costs 150 MB instead of 600 MB as float32.
    labels: long (N,).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels {tuple(self.labels.shape)} do not match {self.images.shape[0]} images"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int) -> ImageSplit:
        """The first n samples (CIFAR files are already shuffled, so this stays balanced-ish)."""
        return ImageSplit(self.images[:n], self.labels[:n], self.classes)
