"""Epoch batch iteration over an in-memory split, sharded across ranks like DistributedSampler."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from training.data.augment import alternate_flip, augment, normalize
from training.data.split import ImageSplit


@dataclass(frozen=True)
class Shard:
    """This process' slice of the data: rank r of world w takes every w-th index."""

    rank: int = 0
    world: int = 1


def epoch_indices(n: int, epoch: int, seed: int, shuffle: bool, shard: Shard) -> torch.Tensor:
    """Indices of this rank for one epoch; the permutation depends only on (seed, epoch),
    so every rank agrees on it and a resumed run replays the same order."""
    if shuffle:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    return order[shard.rank :: shard.world]


@dataclass
class BatchIterator:
    """Yields (x float (B, C, H, W) normalised [augmented], y long (B,)) on `device`."""

    split: ImageSplit
    batch_size: int
    mean: torch.Tensor  # (C,) on device
    std: torch.Tensor  # (C,) on device
    device: torch.device
    train: bool = False
    pad: int = 4
    flip: bool = True
    seed: int = 0
    shard: Shard = Shard()
    channels_last: bool = False
    flip_mode: str = "random"  # or "alternate" (training/data/augment.alternate_flip)

    def batches(self, epoch: int, max_batches: int | None = None) -> Iterator[tuple]:
        idx = epoch_indices(len(self.split), epoch, self.seed, self.train, self.shard)
        # Training drops the ragged tail so every rank takes the same number of steps.
        n = len(idx) - len(idx) % self.batch_size if self.train else len(idx)
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 7919 + epoch + 1)
        for i, start in enumerate(range(0, n, self.batch_size)):
            if max_batches is not None and i >= max_batches:
                return
            sel = idx[start : start + self.batch_size]
            x = normalize(
                self.split.images[sel].to(self.device, non_blocking=True), self.mean, self.std
            )
            if self.train:
                alternate = self.flip and self.flip_mode == "alternate"
                x = augment(x, self.pad, self.flip and not alternate, gen)
                if alternate:
                    x = alternate_flip(x, sel, epoch, self.seed)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.split.labels[sel].to(self.device, non_blocking=True)

    def num_batches(self, max_batches: int | None = None) -> int:
        n = len(epoch_indices(len(self.split), 0, self.seed, False, self.shard))
        count = n // self.batch_size if self.train else -(-n // self.batch_size)
        return count if max_batches is None else min(count, max_batches)
