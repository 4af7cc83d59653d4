"""Loss and per-sample correctness for both output shapes the model has.

Classification: logits (B, C), targets (B,). Language model: logits (B, T, V), targets (B, T)
with 0 (the padding id) ignored; a sequence's "correctness" is its share of next tokens
predicted right, which is what the reward's α·correct term then pays for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.data.text.tokenizer import PAD_ID  # token id 0 pads, never a target


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0):
    """Mean cross-entropy over samples, or over the real tokens of all sequences."""
    if logits.ndim == 3:
        flat = logits.flatten(0, 1)  # (B·T, V)
        return F.cross_entropy(
            flat, y.flatten(), ignore_index=PAD_ID, label_smoothing=label_smoothing
        )
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing)


def sample_scores(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) float: 1/0 per classified sample, or each sequence's next-token accuracy."""
    right = logits.detach().argmax(-1) == y
    if right.ndim == 1:
        return right.float()
    valid = y != PAD_ID  # (B, T)
    return (right & valid).sum(1).float() / valid.sum(1).clamp_min(1).float()
