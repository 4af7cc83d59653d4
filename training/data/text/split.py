"""Token sequences in memory: what the text loaders hand to the batch iterator."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.data.text.tokenizer import PAD_ID


@dataclass(frozen=True)
class TokenSplit:
    """N token sequences, right-padded with 0 to the longest.

    tokens: long (N, T); lengths: long (N,) real tokens per row (padding only at the end);
    targets: long (N,) one class per sequence, or long (N, T) the next token at each position
    (language modelling).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        if self.tokens.ndim != 2 or self.lengths.shape != (n,) or self.targets.shape[0] != n:
            raise ValueError(
                f"tokens {tuple(self.tokens.shape)}, lengths {tuple(self.lengths.shape)} and "
                f"targets {tuple(self.targets.shape)} do not describe the same N sequences"
            )

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def subset(self, n: int) -> TokenSplit:
        return TokenSplit(self.tokens[:n], self.lengths[:n], self.targets[:n], self.classes)


def from_sequences(ids: list[list[int]], labels: list[int], classes: tuple[str, ...]) -> TokenSplit:
    """Variable-length id lists + one label each → a padded TokenSplit."""
    lengths = torch.tensor([len(row) for row in ids], dtype=torch.long)
    tokens = torch.full((len(ids), max(int(lengths.max()), 1)), PAD_ID, dtype=torch.long)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return TokenSplit(tokens, lengths, torch.tensor(labels, dtype=torch.long), classes)


def lm_sequences(stream: torch.Tensor, seq_len: int, classes: tuple[str, ...]) -> TokenSplit:
    """A token stream (N,) → non-overlapping inputs (M, seq_len) and next-token targets.

    Row i reads stream[i·L : (i+1)·L] and predicts stream[i·L+1 : (i+1)·L+1]; the ragged tail
    (< seq_len tokens) is dropped.
    """
    m = (stream.numel() - 1) // seq_len
    if m < 1:
        raise ValueError(f"a stream of {stream.numel()} tokens is shorter than seq_len {seq_len}")
    inputs = stream[: m * seq_len].view(m, seq_len)
    targets = stream[1 : m * seq_len + 1].view(m, seq_len)
    return TokenSplit(inputs, torch.full((m,), seq_len, dtype=torch.long), targets, classes)
