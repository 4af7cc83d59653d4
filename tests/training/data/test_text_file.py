"""Your own texts: JSONL or CSV, classes from the training labels, bad lines skipped and
reported with their line numbers, a seeded hold-out without a val file."""

from __future__ import annotations

import csv
import json

import pytest

from training.data.text.text_file import TextFileError, load_text_files

ROWS = [("a great film", "good"), ("dull and long", "bad"), ("loved it", "good")] * 4


def _jsonl(path, rows, extra=()):
    lines = [json.dumps({"text": t, "label": label}) for t, label in rows]
    path.write_text("\n".join([*lines, *extra]) + "\n")


def _csv(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text"])
        writer.writerows([(label, text) for text, label in rows])


def test_jsonl_and_csv_read_the_same_dataset(tmp_path):
    (tmp_path / "j").mkdir(), (tmp_path / "c").mkdir()
    _jsonl(tmp_path / "j" / "train.jsonl", ROWS)
    _jsonl(tmp_path / "j" / "val.jsonl", ROWS[:3])
    _csv(tmp_path / "c" / "train.csv", ROWS)
    _csv(tmp_path / "c" / "val.csv", ROWS[:3])
    a, b = load_text_files(tmp_path / "j"), load_text_files(tmp_path / "c")
    assert a.train.classes == ("bad", "good") == b.train.classes
    assert a.train.texts == b.train.texts and a.train.labels == b.train.labels
    assert sorted(zip(a.train.texts, a.train.labels, strict=True)) == sorted(
        (t, ("bad", "good").index(label)) for t, label in ROWS
    )
    assert a.val.texts == ["a great film", "dull and long", "loved it"]
    assert a.val.labels == [1, 0, 1] and not a.skipped


def test_bad_lines_are_skipped_with_file_and_line(tmp_path):
    extra = ['{"text": "no label"}', "{not json", '{"text": "", "label": "bad"}', "[1, 2]"]
    _jsonl(tmp_path / "train.jsonl", ROWS, extra)
    _jsonl(tmp_path / "val.jsonl", [("odd one", "neutral"), ("fine", "good")])
    files = load_text_files(tmp_path)
    lines = {(s.path.rsplit("/", 1)[1], s.line): s.reason for s in files.skipped}
    assert set(lines) == {("train.jsonl", n) for n in (13, 14, 15, 16)} | {("val.jsonl", 1)}
    assert "not JSON" in lines[("train.jsonl", 14)]
    assert lines[("val.jsonl", 1)] == "label 'neutral' is not in train"
    assert len(files.train) == len(ROWS) and files.val.texts == ["fine"]


def test_integer_labels_are_ordered_by_value(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [("x", 10), ("y", 2), ("z", 1)] * 2)
    assert load_text_files(tmp_path).train.classes == ("1", "2", "10")


def test_without_a_val_file_a_seeded_share_of_each_class_is_held_out(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [(f"text {i}", "ab"[i % 2]) for i in range(20)])
    a, b = load_text_files(tmp_path, seed=1), load_text_files(tmp_path, seed=1)
    assert a.val.texts == b.val.texts and sorted(a.val.labels) == [0, 0, 1, 1]
    assert not set(a.val.texts) & set(a.train.texts) and len(a.train) == 16


def test_a_single_label_is_refused(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [("x", "only"), ("y", "only")])
    with pytest.raises(TextFileError, match="at least 2 labels, found only 'only'"):
        load_text_files(tmp_path)


def test_missing_or_ambiguous_files_are_refused(tmp_path):
    with pytest.raises(TextFileError, match="train.jsonl or train.csv"):
        load_text_files(tmp_path)
    _jsonl(tmp_path / "train.jsonl", ROWS)
    _csv(tmp_path / "train.csv", ROWS)
    with pytest.raises(TextFileError, match="keep one"):
        load_text_files(tmp_path)
