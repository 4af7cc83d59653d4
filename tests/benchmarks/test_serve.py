"""The serving benchmark runs end to end (tiny settings) and computes its ratios right."""

from __future__ import annotations

import json

import pytest

from benchmarks.loadgen import answer_differences, server_split
from benchmarks.serve.ratios import check_targets, compute_ratios
from benchmarks.serve.run import main
from tests.service.helpers import FIXTURES, write_cnn_checkpoint


def row(scheduling, load, c, rps, p50, by_action=None):
    return {"scheduling": scheduling, "load": load, "concurrency": c, "throughput_rps": rps,
            "latency_ms": {"p50": p50}, "by_action": by_action or {}}  # fmt: skip


def p50s(**by_action):
    return {a: {"latency_ms": {"p50": v}} for a, v in by_action.items()}


def test_ratios_compare_schedulings_actions_and_matching_batch_sizes():
    server = [
        row("batch", "mixed", 16, 100.0, 130.0, p50s(straight=130.0, loop_all=130.0)),
        row("iteration", "mixed", 16, 110.0, 90.0, p50s(straight=40.0, loop_all=160.0)),
        row("batch", "mixed-open", 16, 80.0, 100.0, p50s(straight=100.0, loop_all=100.0)),
        row("iteration", "mixed-open", 16, 80.0, 60.0, p50s(straight=30.0, loop_all=90.0)),
        row("batch", "adaptive", 16, 150.0, 80.0, p50s(straight=80.0, loop_l1=90.0)),
        row("iteration", "adaptive", 16, 160.0, 50.0, p50s(straight=55.0, loop_l1=120.0)),
        row("batch", "straight", 16, 200.0, 70.0),
        row("iteration", "straight", 16, 210.0, 50.0),
        row("iteration", "straight", 64, 400.0, 90.0),
    ]
    raw = [
        {"load": "straight", "batch_size": 16, "throughput_sps": 420.0},
        {"load": "straight", "batch_size": 32, "throughput_sps": 800.0},  # max batch 32
    ]
    ratios = compute_ratios(server, raw, max_batch_size=32)
    assert ratios["throughput_iteration_over_batch"]["mixed"]["16"] == 1.1
    assert ratios["mixed_straight_p50_over_loop_all_p50"] == {
        "batch": {"16": 1.0, "64": None}, "iteration": {"16": 0.25, "64": None},
    }  # fmt: skip
    assert ratios["adaptive_straight_p50_over_all_straight_p50"]["iteration"]["16"] == 1.1
    assert ratios["loop_all_p50_iteration_over_batch"] == {
        "mixed": {"16": round(160 / 130, 3), "64": None}, "mixed-open": {"16": 0.9, "64": None},
    }  # fmt: skip
    assert ratios["server_over_raw"]["iteration"]["straight"] == {"16": 0.5, "64": 0.5}
    checks = check_targets(
        ratios, [{"answers_compared": 5, "answers_differing": 0}], {"holds": True}
    )
    assert checks["mixed_straight_p50_over_loop_all_p50"]["holds"] is True  # 0.25 ≤ 0.35
    assert checks["mixed_throughput_iteration_over_batch"]["holds"] is True  # 1.1 ≥ 0.95
    assert checks["adaptive_straight_p50_over_all_straight_p50"]["holds"] is True  # 1.1 ≤ 1.3
    assert checks["mixed_loop_all_p50_iteration_over_batch"]["holds"] is False  # 1.23 > 1.0
    assert checks["open_mixed_loop_all_p50_iteration_over_batch"]["holds"] is True  # 0.9 ≤ 1.0
    assert checks["answers_under_load_equal_answers_alone"]["holds"] is True


def test_answer_differences_name_what_differs():
    want = {"label": "cat", "action": "loop_l1", "iterations": 5,
            "probabilities": {"cat": 0.8, "dog": 0.1}}  # fmt: skip
    assert answer_differences(want, {**want, "iterations": 6}) == []  # within one iteration
    got = {**want, "action": "straight", "iterations": 0, "probabilities": {"cat": 0.7}}
    assert answer_differences(want, got) == [
        "action 'straight' != 'loop_l1'", "iterations 0 vs 5", "probabilities differ by 1.00e-01",
    ]  # fmt: skip


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


@pytest.mark.slow  # spawns two servers and loads them: 30-60 s on a busy 2-core machine
def test_bench_runs_end_to_end_with_tiny_settings(tmp_path):
    write_cnn_checkpoint(tmp_path / "models")
    out = tmp_path / "bench.json"
    args = ["--model-dir", str(tmp_path / "models"), "--images", str(FIXTURES), "--levels", "1,2",
            "--loads", "mixed,straight", "--duration", "0.6", "--slices", "2", "--warmup", "0.1",
            "--device", "cpu", "--out", str(out)]  # fmt: skip
    main(args)
    report = json.loads(out.read_text())
    measured = {(r["scheduling"], r["load"], r["concurrency"]) for r in report["server"]}
    schedulings, loads = ("batch", "iteration"), ("mixed", "straight")
    closed = {(s, load, c) for s in schedulings for load in loads for c in (1, 2)}
    # then the mixed load open-loop, at 0.8 of batch scheduling's mixed throughput at 2 clients
    assert measured == closed | {(s, "mixed-open", 2) for s in schedulings}
    batch_mixed = next(r for r in report["server"] if r["load"] == "mixed"
                       and r["scheduling"] == "batch" and r["concurrency"] == 2)  # fmt: skip
    open_rows = [r for r in report["server_rounds"] if r["load"] == "mixed-open"]
    assert {r["offered_rps"] for r in open_rows} == {round(0.8 * batch_mixed["throughput_rps"], 1)}
    for row in report["server"]:
        assert row["errors"] == {} and row["throughput_rps"] > 0
        assert row["answers_compared"] > 0 and row["answers_differing"] == 0
    mixed = [r for r in report["server"] if r["load"] in ("mixed", "mixed-open")]
    assert all(set(r["actions"]) == {"straight", "loop_all"} for r in mixed)
    raw = {(r["load"], r["batch_size"]) for r in report["raw"]}
    assert raw == {(load, c) for load in loads for c in (1, 2)}
    assert report["answers_alone_agree"]["holds"] is True
    assert report["ratios"]["throughput_iteration_over_batch"]["mixed"]["1"] > 0
