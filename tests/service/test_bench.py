"""The serving benchmark runs end to end (tiny settings) and computes its ratios right."""

from __future__ import annotations

import json

import pytest

from service.bench import _ratios, main
from service.loadgen import server_split
from tests.service.helpers import FIXTURES, write_cnn_checkpoint


def test_ratios_compare_matching_batch_sizes_and_modes():
    server = [
        {"mode": "adaptive", "concurrency": 1, "throughput_rps": 50.0},
        {"mode": "adaptive", "concurrency": 64, "throughput_rps": 400.0},
        {"mode": "loop_all", "concurrency": 1, "throughput_rps": 25.0},
        {"mode": "loop_all", "concurrency": 64, "throughput_rps": 100.0},
    ]
    raw = [
        {"mode": "adaptive", "batch_size": 1, "throughput_sps": 100.0},
        {"mode": "adaptive", "batch_size": 32, "throughput_sps": 800.0},  # max batch 32
        {"mode": "loop_all", "batch_size": 1, "throughput_sps": 50.0},
        {"mode": "loop_all", "batch_size": 32, "throughput_sps": 200.0},
    ]
    ratios = _ratios(server, raw)
    assert ratios["server_over_raw"]["adaptive"] == {"1": 0.5, "64": 0.5}
    assert ratios["adaptive_over_loop_all"] == {"1": 2.0, "64": 4.0}
    assert ratios["raw_adaptive_over_loop_all"] == {"1": 2.0, "32": 4.0}


def test_server_split_reports_means_from_metric_deltas():
    before = {"dynalay_batch_size_sum": 10, "dynalay_batch_size_count": 5}
    after = {
        "dynalay_batch_size_sum": 30,
        "dynalay_batch_size_count": 10,
        "dynalay_queue_duration_seconds_sum": 0.2,
        "dynalay_queue_duration_seconds_count": 20,
        "dynalay_compute_duration_seconds_sum[loop]": 0.05,
        "dynalay_compute_duration_seconds_count[loop]": 5,
    }
    split = server_split(before, after)
    assert split["mean_batch_size"] == 4.0
    assert split["queue_ms_mean"] == 10.0
    assert split["compute_ms_per_batch"]["loop"] == 10.0
    assert split["compute_ms_per_batch"]["straight"] is None


@pytest.mark.slow  # spawns a server and loads it: 10-30 s on a busy 2-core machine
def test_bench_runs_end_to_end_with_tiny_settings(tmp_path):
    write_cnn_checkpoint(tmp_path / "models")
    out = tmp_path / "bench.json"
    args = ["--model-dir", str(tmp_path / "models"), "--images", str(FIXTURES), "--levels", "1,2",
            "--modes", "adaptive,loop_all", "--duration", "0.3", "--warmup", "0.1",
            "--raw-seconds", "0.05", "--device", "cpu", "--out", str(out)]  # fmt: skip
    main(args)
    report = json.loads(out.read_text())
    assert {(r["mode"], r["concurrency"]) for r in report["server"]} == {
        ("adaptive", 1), ("adaptive", 2), ("loop_all", 1), ("loop_all", 2),
    }  # fmt: skip
    for row in report["server"]:
        assert row["errors"] == {} and row["throughput_rps"] > 0
        assert row["server"]["queue_ms_mean"] is not None
    assert all(r["actions"] == {"loop_all": r["requests"]} for r in report["server"][2:])
    assert {r["batch_size"] for r in report["raw"]} == {1, 2}
    assert report["ratios"]["adaptive_over_loop_all"]["1"] > 0


@pytest.mark.slow
def test_the_protocol_benchmark_runs_and_the_formats_agree(tmp_path):
    """bench_protocols end to end on the embedded CIFAR-10 model, very short."""
    from service import bench_protocols

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
