"""What a fit needs from a dataset, whatever its modality: batches, classes, model fields and
the checkpoint's preprocessing (images: data/prepare.py; text: data/text/prepare.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


class BatchSource(Protocol):
    """Yields (x, y) on the device: images (B, 3, H, W) / token ids (B, T), and targets."""

    def batches(self, epoch: int, max_batches: int | None = None) -> Iterator[tuple]: ...

    def num_batches(self, max_batches: int | None = None) -> int: ...


@dataclass(frozen=True)
class PreparedData:
    train_it: BatchSource
    test_it: BatchSource
    classes: tuple[str, ...]
    model: dict[str, Any]  # ModelConfig fields the data fixes (arch, task, vocab_size)
    preprocessing: dict[str, Any]  # the checkpoint's preprocessing dict (model contract)
    extra_files: dict[str, bytes] = field(default_factory=dict)  # e.g. tokenizer.json
    task: str = "classify"  # "classify" | "lm"
    eval_split: str = "test"  # what test_it holds: "test", or "validation" (held-out training)
