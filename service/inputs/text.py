"""Text → token ids with the checkpoint's own Hugging Face `tokenizers` file.

The tokenizer's built-in padding/truncation are switched off: the engine's collation pads a
batch to its longest member, and we truncate here so the answer can say that it happened.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from service.core import ServiceError


@dataclass(frozen=True)
class EncodedText:
    ids: np.ndarray  # (T,) int64, 1 <= T <= max_length
    n_tokens: int  # before truncation
    truncated: bool


class TextEncoder:
    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_checkpoint(cls, directory: Path, preprocessing: dict) -> TextEncoder:
        path = directory / preprocessing.get("tokenizer", "tokenizer.json")
        return cls(Tokenizer.from_file(str(path)), int(preprocessing.get("max_length", 256)))

    def encode(self, text: str) -> EncodedText:
        ids = self.tokenizer.encode(text).ids
        if not ids:
            raise ServiceError(422, "the text produced no tokens; send some words")
        truncated = len(ids) > self.max_length
        kept = np.asarray(ids[: self.max_length], dtype=np.int64)
        return EncodedText(kept, len(ids), truncated)


# Control (NUL, ESC, ...) and format (zero-width space, BOM, ...) characters: a text made only
# of these and whitespace carries no words, yet the tokenizer turns each run into [UNK].
_INVISIBLE = frozenset({"Cc", "Cf"})


def validate_text(text: str, max_bytes: int) -> None:
    """Cheap checks done on the event loop before any tokenizing (O(len), len ≤ max_bytes)."""
    if not text.strip():
        raise ServiceError(422, "`text` is empty; send a non-empty UTF-8 string")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates such as "\ud800" from JSON escapes
        raise ServiceError(400, "`text` is not valid Unicode; send UTF-8 text") from exc
    if size > max_bytes:
        raise ServiceError(413, f"`text` is {size} bytes of UTF-8; the limit is {max_bytes}")
    if not any(_visible(char) for char in text):
        raise ServiceError(
            422,
            "`text` holds only whitespace, control or format characters (no words); "
            "send some words",
        )


def _visible(char: str) -> bool:
    return not char.isspace() and unicodedata.category(char) not in _INVISIBLE
