"""Your own texts: DIR/train.jsonl and DIR/val.jsonl, one `{"text": ..., "label": ...}` per
line, or the same as train.csv / val.csv with `text` and `label` columns.

Class names are the training labels, sorted (numerically when every label is an integer), so
label i is the i-th name. Without a val file a seeded share of each class is held out. A line
that is not a labelled text is skipped and reported (file, line and reason), never fatal; a
single class is refused.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.text.imdb import TextSplit

SUFFIXES = (".jsonl", ".csv")


class TextFileError(ValueError):
    """The files cannot make a classification dataset (named, with what to change)."""


@dataclass(frozen=True)
class SkippedLine:
    path: str
    line: int
    reason: str


@dataclass(frozen=True)
class TextFiles:
    train: TextSplit
    val: TextSplit
    skipped: tuple[SkippedLine, ...]


def load_text_files(data_dir: Path, val_fraction: float = 0.2, seed: int = 0) -> TextFiles:
    root = Path(data_dir)
    train_path = split_file(root, "train")
    if train_path is None:
        raise TextFileError(f"{root}: expected train.jsonl or train.csv (text and label each)")
    skipped: list[SkippedLine] = []
    train_rows = read_rows(train_path, skipped)
    classes = class_names(sorted({label for _, label in train_rows}), train_path)
    train = _labelled(train_rows, classes)
    # A fixed shuffle: the first n (train_subset) hold every class, as IMDB's reader does.
    train = _take(train, np.random.default_rng(0).permutation(len(train)))
    val_path = split_file(root, "val")
    if val_path is None:
        train, val = hold_out(train, val_fraction, seed)
        return TextFiles(train, val, tuple(skipped))
    val_rows = []
    for text, label, line in read_rows(val_path, skipped, numbered=True):
        if label in classes:
            val_rows.append((text, label))
        else:
            skipped.append(SkippedLine(str(val_path), line, f"label {label!r} is not in train"))
    return TextFiles(train, _labelled(val_rows, classes), tuple(skipped))


def split_file(root: Path, split: str) -> Path | None:
    found = [root / f"{split}{s}" for s in SUFFIXES if (root / f"{split}{s}").is_file()]
    if len(found) > 1:
        raise TextFileError(f"{root}: both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def read_rows(path: Path, skipped: list[SkippedLine], numbered: bool = False) -> list[tuple]:
    """(text, label) per valid record — (text, label, line) with numbered — in file order."""
    records = _csv_records(path) if path.suffix == ".csv" else _jsonl_records(path)
    rows = []
    for line, record in records:
        problem = _problem(record)
        if problem:
            skipped.append(SkippedLine(str(path), line, problem))
            continue
        text, label = record["text"], str(record["label"]).strip()
        rows.append((text, label, line) if numbered else (text, label))
    return rows


def class_names(labels: list[str], path: Path) -> tuple[str, ...]:
    if len(labels) < 2:
        found = f"only {labels[0]!r}" if labels else "none"
        raise TextFileError(f"{path}: a classifier needs at least 2 labels, found {found}")
    if all(label.lstrip("-").isdigit() for label in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def hold_out(split: TextSplit, fraction: float, seed: int) -> tuple[TextSplit, TextSplit]:
    """Per class, a seeded `fraction` (at least one text when the class has two) → val."""
    if not 0.0 < fraction < 1.0:
        raise TextFileError(f"val_fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.labels)
    is_val = np.zeros(len(labels), dtype=bool)
    for label in range(len(split.classes)):
        rows = rng.permutation(np.flatnonzero(labels == label))
        is_val[rows[: max(1, round(len(rows) * fraction)) if len(rows) > 1 else 0]] = True
    return _take(split, np.flatnonzero(~is_val)), _take(
        split, rng.permutation(np.flatnonzero(is_val))
    )


def _jsonl_records(path: Path):
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw)
            except json.JSONDecodeError as exc:
                yield number, f"not JSON ({exc.msg})"


def _csv_records(path: Path):
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"text", "label"} <= set(reader.fieldnames or ()):
            raise TextFileError(f"{path}: the header must name `text` and `label` columns")
        for record in reader:
            yield reader.line_num, record


def _problem(record) -> str | None:
    """Why a parsed record is not a labelled text (None: it is one)."""
    if isinstance(record, str):
        return record
    if not isinstance(record, dict) or "text" not in record or "label" not in record:
        return 'expected an object with "text" and "label"'
    if not isinstance(record["text"], str) or not record["text"].strip():
        return "`text` must be a non-empty string"
    label = record["label"]
    if isinstance(label, bool) or not isinstance(label, str | int) or not str(label).strip():
        return "`label` must be a non-empty string or an integer"
    return None


def _labelled(rows: list[tuple], classes: tuple[str, ...]) -> TextSplit:
    index = {name: i for i, name in enumerate(classes)}
    return TextSplit([t for t, _ in rows], [index[label] for _, label in rows], classes)


def _take(split: TextSplit, rows: np.ndarray) -> TextSplit:
    return TextSplit([split.texts[i] for i in rows], [split.labels[i] for i in rows], split.classes)
