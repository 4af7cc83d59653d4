"""Per-channel normalisation statistics on the 0..1 scale (stored in checkpoints)."""

from __future__ import annotations

import torch

from training.data.split import ImageSplit


def channel_stats(split: ImageSplit, max_images: int = 10_000) -> tuple[list[float], list[float]]:
    """Mean and std per channel of (up to max_images of) the split, 0..1 scale."""
    x = split.images[:max_images].to(torch.float64) / 255.0  # (N, C, H, W)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)  # a constant synthetic channel must not divide by 0
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def image_preprocessing(mean: list[float], std: list[float], size: int = 32) -> dict:
    """The checkpoint's preprocessing dict (model contract: image kind, 0..1-scale mean/std)."""
    return {"kind": "image", "image_size": [size, size], "mean": list(mean), "std": list(std)}
