"""What every engine feeds its network: a batch collated onto the device, and the warm-up batch.

Both engines take the same inputs (images (3, H, W) float32, or token ids (T,) int64) and hand
the same tensors to their parts, so collation is written once here and bound to an engine's
modality, device and layout in its `spec()`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from service.engines.base import EngineInput, ModelMeta
from service.engines.precision import in_layout

WARMUP_TOKENS = 8  # length of the dummy text used to warm a text model up


def collate(
    batch: Sequence[EngineInput], modality: str, device: torch.device, layout: str = "nchw"
) -> tuple[Tensor, Tensor | None]:
    """Images → (B, 3, H, W) float32 in `layout` and None; text → ids (B, T) padded with 0
    (the model's padding id) to the longest, and lengths (B,) long."""
    if modality == "text":
        return _collate_text(batch, device)
    x = torch.from_numpy(np.stack([item.data for item in batch]).astype(np.float32, copy=False))
    return in_layout(x.to(device, non_blocking=True), layout), None


def _collate_text(batch: Sequence[EngineInput], device: torch.device) -> tuple[Tensor, Tensor]:
    lengths = [len(item.data) for item in batch]
    ids = np.zeros((len(batch), max(lengths)), dtype=np.int64)  # (B, T)
    for row, item in enumerate(batch):
        ids[row, : len(item.data)] = item.data
    return (
        torch.from_numpy(ids).to(device),
        torch.tensor(lengths, dtype=torch.long, device=device),
    )


def blank_input(meta: ModelMeta) -> np.ndarray:
    """One input of the model's shape: a black image, or WARMUP_TOKENS token ids of 1."""
    if meta.modality == "text":
        return np.ones(WARMUP_TOKENS, dtype=np.int64)
    height, width = meta.preprocessing.get("image_size", (32, 32))
    return np.zeros((3, int(height), int(width)), dtype=np.float32)


def warmup_batch(meta: ModelMeta) -> list[EngineInput]:
    """One blank input per forced action plus one the agent decides: every code path once."""
    blank = blank_input(meta)
    return [EngineInput(blank, action) for action in (*range(len(meta.actions)), None)]
