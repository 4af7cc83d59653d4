"""The engine benchmark runs both engines on the same inputs and reports them side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.engines import compare_engines, format_table, main
from model.actions import ACTIONS


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_compare_engines_reports_both_side_by_side(onnx_repo: Path, name: str) -> None:
    report = compare_engines(onnx_repo / name, (1, 4), seconds=0.0, n_inputs=8)
    rows = report["results"]
    assert [(r["engine"], r["batch_size"]) for r in rows] == [
        ("torch", 1), ("torch", 4), ("onnx", 1), ("onnx", 4),
    ]  # fmt: skip
    for row in rows:
        assert row["samples_per_s"] > 0 and sum(row["action_mix"].values()) == 8
        assert row["agreement"] == 1.0
    assert all(a in format_table(report) for a in ACTIONS)


def test_cli_writes_json(onnx_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [str(onnx_repo / "lstm"), "--batch-sizes", "2", "--seconds", "0", "--json", str(out)]
    assert main(argv) == 0
    assert {r["engine"] for r in json.loads(out.read_text())["results"]} == {"torch", "onnx"}
