"""Tiny synthetic text in the official layouts, for the tests (never the real datasets).

Reviews mix neutral filler with words of their class and `<br />` tags like IMDB's, so a tiny
LSTM learns them in a few steps; WikiText-style files are space-separated words per line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

POSITIVE = ("great", "wonderful", "superb", "moving", "brilliant", "loved", "charming")
NEGATIVE = ("boring", "awful", "dull", "weak", "terrible", "hated", "clumsy")
FILLER = ("the", "film", "a", "story", "and", "actors", "plot", "was", "it", "movie", "of", "cast")


def synthetic_review(label: int, rng: np.random.Generator) -> str:
    words = POSITIVE if label else NEGATIVE
    n = int(rng.integers(4, 30))
    tokens = [str(rng.choice(words if rng.random() < 0.3 else FILLER)) for _ in range(n)]
    if n > 10:
        tokens.insert(n // 2, "<br /><br />")
    return " ".join(tokens).capitalize() + "."


def write_imdb_layout(data_dir: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """data_dir/aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt; returns data_dir."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            label = i % 2
            rating = int(rng.integers(7, 11)) if label else int(rng.integers(1, 5))
            folder = Path(data_dir) / "aclImdb" / split / ("pos" if label else "neg")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i // 2}_{rating}.txt").write_text(synthetic_review(label, rng))
    return Path(data_dir)


def write_wikitext_layout(data_dir: Path, n_lines: int = 60, seed: int = 0) -> Path:
    """data_dir/wikitext-2/wiki.{train,valid,test}.tokens with a repetitive word pattern."""
    rng = np.random.default_rng(seed)
    folder = Path(data_dir) / "wikitext-2"
    folder.mkdir(parents=True, exist_ok=True)
    vocab = [*FILLER, *POSITIVE, "<unk>", ",", "."]
    for split in ("train", "valid", "test"):
        lines = [" = Heading = \n"]
        for _ in range(n_lines):
            start = int(rng.integers(0, len(vocab)))
            words = [vocab[(start + k) % len(vocab)] for k in range(int(rng.integers(5, 20)))]
            lines.append(" " + " ".join(words) + " \n")
            lines.append(" \n")
        (folder / f"wiki.{split}.tokens").write_text("".join(lines), encoding="utf-8")
    return Path(data_dir)
