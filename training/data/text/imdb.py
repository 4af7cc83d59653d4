"""Reader for the official IMDB Large Movie Review layout (aclImdb_v1.tar.gz, Maas et al. 2011).

    aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt     one review per file, UTF-8

Label 0 = negative, 1 = positive. Reviews come back in a fixed shuffled order (seeded), so the
first n of a split (train_subset, --limit) hold both classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FOLDER = "aclImdb"
CLASSES = ("negative", "positive")
_LABEL_DIRS = ("neg", "pos")  # index = label


@dataclass(frozen=True)
class TextSplit:
    """Raw texts with one label each."""

    texts: list[str]
    labels: list[int]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, n: int) -> TextSplit:
        return TextSplit(self.texts[:n], self.labels[:n], self.classes)


def imdb_folder(data_dir: Path) -> Path:
    """Accepts DIR (holding aclImdb/) or the aclImdb folder itself."""
    data_dir = Path(data_dir)
    return data_dir if data_dir.name == FOLDER else data_dir / FOLDER


def load_imdb(data_dir: Path, split: str, seed: int = 0) -> TextSplit:
    """All reviews of `split` ("train" | "test"), shuffled by `seed`."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown IMDB split {split!r}; expected 'train' or 'test'")
    root = imdb_folder(data_dir) / split
    texts, labels = [], []
    for label, name in enumerate(_LABEL_DIRS):
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"imdb: missing {folder} — expected the official layout "
                f"{FOLDER}/{{train,test}}/{{neg,pos}}/<id>_<rating>.txt; pass --data-dir"
            )
        for path in sorted(folder.glob("*.txt"), key=_review_id):
            texts.append(path.read_text(encoding="utf-8"))
            labels.append(label)
    if not texts:
        raise FileNotFoundError(f"imdb: no reviews under {root}")
    order = np.random.default_rng(seed).permutation(len(texts))
    return TextSplit([texts[i] for i in order], [labels[i] for i in order], CLASSES)


def _review_id(path: Path) -> tuple[int, str]:
    """ "12_7.txt" → (12, ...): numeric id order, whatever the file system lists."""
    head = path.stem.split("_", 1)[0]
    return (int(head) if head.isdigit() else -1, path.name)
