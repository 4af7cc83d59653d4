"""Measurements repeated over rounds, reduced to one row each; answers compared across servers."""

from __future__ import annotations

import statistics

from benchmarks.loadgen import answer_differences


def medians(rounds: list[dict]) -> list[dict]:
    """One row per (scheduling, load, concurrency): the median over the rounds of throughput
    and of each latency percentile, overall and per answered action; counts summed."""
    groups: dict[tuple, list[dict]] = {}
    for row in rounds:
        groups.setdefault((row["scheduling"], row["load"], row["concurrency"]), []).append(row)
    rows = []
    for (scheduling, load, concurrency), group in groups.items():
        actions = sorted({a for r in group for a in r["by_action"]})
        rows.append({
            "scheduling": scheduling, "load": load, "concurrency": concurrency,
            "rounds": len(group),
            "requests": sum(r["requests"] for r in group),
            "errors": summed([r["errors"] for r in group]),
            "throughput_rps": median(r["throughput_rps"] for r in group),
            "latency_ms": median_latencies([r["latency_ms"] for r in group]),
            "by_action": {
                a: {
                    "answers": sum(r["by_action"].get(a, {}).get("answers", 0) for r in group),
                    "throughput_rps": median(
                        r["by_action"].get(a, {}).get("throughput_rps", 0.0) for r in group
                    ),
                    "latency_ms": median_latencies(
                        [r["by_action"][a]["latency_ms"] for r in group if a in r["by_action"]]
                    ),
                }
                for a in actions
            },
            "actions": summed([r["actions"] for r in group]),
            "layer_evaluations_mean": median(
                r["layer_evaluations_mean"] for r in group if r["layer_evaluations_mean"]
            ),
            "mean_batch_size": median(
                r["server"]["mean_batch_size"] for r in group if r["server"]["mean_batch_size"]
            ),
            "answers_compared": sum(r["answers_compared"] for r in group),
            "answers_differing": sum(r["answers_differing"] for r in group),
        })  # fmt: skip
    return rows


def median(values) -> float | None:
    """The median of the values that are not None, rounded; None when there are none."""
    values = [v for v in values if v is not None]
    return round(float(statistics.median(values)), 3) if values else None


def median_latencies(latencies: list[dict]) -> dict:
    return {k: median(lat[k] for lat in latencies) for k in ("mean", "p50", "p95", "p99")}


def summed(counters: list[dict]) -> dict:
    total: dict = {}
    for counter in counters:
        for key, n in counter.items():
            total[key] = total.get(key, 0) + n
    return total


def answers_agree(alone: dict[str, dict[str, list[dict]]], schedulings: list[str]) -> dict:
    """Answers sent alone: the same in every scheduling (label, action, iterations ±1, 1e-4).

    `alone[scheduling][load]` holds the answer to each of that load's bodies, sent alone."""
    first, differing, compared = alone[schedulings[0]], [], 0
    for scheduling in schedulings[1:]:
        for load, answers in alone[scheduling].items():
            for index, (want, got) in enumerate(zip(first[load], answers, strict=True)):
                compared += 1
                if answer_differences(want, got):
                    differing.append(f"{scheduling} {load} body {index}")
    return {"compared": compared, "differing": differing, "holds": not differing}
