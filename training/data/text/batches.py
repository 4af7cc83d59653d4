"""Epoch batches of token sequences, grouped by length so little compute goes to padding.

The epoch's indices (shuffled in training) are cut into pools of `pool` batches; each pool is
sorted by length and cut into batches, and the batch order is shuffled. Every batch is trimmed
to its longest row, so (x, y) = (long (B, T_batch), targets).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from training.data.batches import Shard, epoch_indices
from training.data.text.split import TokenSplit


@dataclass
class TextBatchIterator:
    split: TokenSplit
    batch_size: int
    device: torch.device
    train: bool = False
    seed: int = 0
    shard: Shard = field(default_factory=Shard)
    pool: int = 50  # batches sorted together: more = less padding, less randomness

    def batches(self, epoch: int, max_batches: int | None = None) -> Iterator[tuple]:
        for i, sel in enumerate(self._batch_indices(epoch)):
            if max_batches is not None and i >= max_batches:
                return
            width = max(int(self.split.lengths[sel].max()), 1)
            x = self.split.tokens[sel, :width]  # (B, T_batch), 0 = padding
            y = self.split.targets[sel]
            if y.ndim == 2:
                y = y[:, :width]
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def num_batches(self, max_batches: int | None = None) -> int:
        n = len(epoch_indices(len(self.split), 0, self.seed, False, self.shard))
        count = n // self.batch_size if self.train else -(-n // self.batch_size)
        return count if max_batches is None else min(count, max_batches)

    def _batch_indices(self, epoch: int) -> list[torch.Tensor]:
        idx = epoch_indices(len(self.split), epoch, self.seed, self.train, self.shard)
        if self.train:  # drop the ragged tail so every rank takes the same number of steps
            idx = idx[: len(idx) - len(idx) % self.batch_size]
        batches: list[torch.Tensor] = []
        for pool in idx.split(self.batch_size * self.pool):
            batches += list(self._by_length(pool).split(self.batch_size))
        # Shuffled batch order, in evaluation too: the first k batches (a per-epoch evaluation
        # on eval_subset samples) must not be the longest texts.
        g = torch.Generator().manual_seed(self.seed * 1_000_033 + epoch)
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def _by_length(self, idx: torch.Tensor) -> torch.Tensor:
        order = torch.sort(self.split.lengths[idx], descending=True, stable=True).indices
        return idx[order]
