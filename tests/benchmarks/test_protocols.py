"""The wire-format benchmark runs end to end, and the three formats give the same answers."""

from __future__ import annotations

import json

import pytest

from benchmarks import protocols as bench_protocols


@pytest.mark.slow
def test_the_protocol_benchmark_runs_and_the_formats_agree(tmp_path):
    """benchmarks.protocols end to end on the embedded CIFAR-10 model, very short."""
    out = tmp_path / "protocols.json"
    argv = ["--duration", "0.5", "--rounds", "1", "--concurrency", "1", "--out", str(out)]
    assert bench_protocols.main(argv) == 0
    report = json.loads(out.read_text())
    rows = report["results"]
    assert {(r["format"], r["batch"]) for r in rows} == {
        (f, b) for f in ("json", "binary", "grpc") for b in (1, 16)
    }
    assert all(r["errors"] == 0 and r["requests_per_s"] > 0 for r in rows)
    for batch in (1, 16):  # same tensors, same answers whatever the wire format
        assert len({tuple(r["classes"]) for r in rows if r["batch"] == batch}) == 1
