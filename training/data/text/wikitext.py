"""Reader for WikiText-2's official files (Merity et al. 2016): wiki.{train,valid,test}.tokens.

The files are already word-tokenised (rare words are `<unk>`). As in the usual word-level
setup, every line's words are followed by `<eos>` and the vocabulary is the training split's
words (33,278 with `<eos>`). We put [PAD] first so that id 0 stays the model's padding id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

FOLDER = "wikitext-2"
SPLITS = ("train", "valid", "test")
EOS, UNK, PAD = "<eos>", "<unk>", "[PAD]"


def wikitext_file(data_dir: Path, split: str) -> Path:
    """Accepts DIR (holding wikitext-2/) or the folder itself."""
    if split not in SPLITS:
        raise ValueError(f"unknown WikiText-2 split {split!r}; expected one of {SPLITS}")
    data_dir = Path(data_dir)
    folder = data_dir if (data_dir / "wiki.train.tokens").exists() else data_dir / FOLDER
    path = folder / f"wiki.{split}.tokens"
    if not path.exists():
        raise FileNotFoundError(f"wikitext2: missing {path}; pass --data-dir (holding {FOLDER}/)")
    return path


def read_words(path: Path) -> Iterator[str]:
    """Words of the file, `<eos>` after every non-empty line."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if words:
                yield from words
                yield EOS


def build_vocabulary(words: Sequence[str]) -> tuple[str, ...]:
    """[PAD], then words in order of first appearance (stable, so ids are reproducible)."""
    return (PAD, *dict.fromkeys(w for w in words if w != PAD))


def to_ids(words: Sequence[str], vocabulary: Sequence[str]) -> torch.Tensor:
    """Words → long (N,) ids; out-of-vocabulary words become <unk>."""
    index = {w: i for i, w in enumerate(vocabulary)}
    unk = index.get(UNK, 0)
    return torch.tensor([index.get(w, unk) for w in words], dtype=torch.long)


def load_wikitext(
    data_dir: Path, split: str, vocabulary: Sequence[str] | None = None
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """(ids long (N,), vocabulary) of a split; the vocabulary is the train split's unless given."""
    if vocabulary is None:
        vocabulary = build_vocabulary(list(read_words(wikitext_file(data_dir, "train"))))
    words = list(read_words(wikitext_file(data_dir, split)))
    return to_ids(words, vocabulary), tuple(vocabulary)
