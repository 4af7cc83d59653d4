"""The validation split: a fixed, seeded set of training images held out of training.

Every model choice (recipe, β, thresholds, which checkpoint ships) is made on it, so the test
set is read once per shipped checkpoint. The same seed and size always pick the same images,
whichever machine or run asks.
"""

from __future__ import annotations

import torch

from training.data.split import ImageSplit

VAL_SIZE = 5000
VAL_SEED = 20261207


def holdout_indices(
    n: int, size: int = VAL_SIZE, seed: int = VAL_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) of a split of n samples, both sorted.

    >>> train, val = holdout_indices(10, size=3, seed=0)
    >>> len(train), len(val), sorted(set(train.tolist()) | set(val.tolist())) == list(range(10))
    (7, 3, True)
    """
    if not 0 < size < n:
        raise ValueError(f"a validation split of {size} needs more than {size} samples, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[size:].sort().values, order[:size].sort().values


def split_holdout(
    train: ImageSplit, size: int = VAL_SIZE, seed: int = VAL_SEED
) -> tuple[ImageSplit, ImageSplit]:
    """The training split less its held-out images, and those images."""
    keep, held = holdout_indices(len(train), size, seed)
    return (
        ImageSplit(train.images[keep], train.labels[keep], train.classes),
        ImageSplit(train.images[held], train.labels[held], train.classes),
    )
