"""The serving benchmark's ratios, and the targets that decide whether iteration scheduling
does its job."""

from __future__ import annotations

CHECK_LEVEL = 16  # the concurrency the targets below are stated at
OPEN_LOAD = "mixed-open"  # the mixed load at a fixed arrival rate (its row's concurrency: 16)
TARGETS = {
    "mixed_straight_p50_over_loop_all_p50": 0.35,  # iteration scheduling, at most
    "mixed_throughput_iteration_over_batch": 0.95,  # at least
    "adaptive_straight_p50_over_all_straight_p50": 1.3,  # iteration scheduling, at most
    # A looped answer's p50, iteration over batch scheduling, at most: closed loop (each
    # scheduling at the load its own answers invite) and open loop (the same arrivals).
    "mixed_loop_all_p50_iteration_over_batch": 1.0,
    "open_mixed_loop_all_p50_iteration_over_batch": 1.0,
}
AT_LEAST = {"mixed_throughput_iteration_over_batch"}


def compute_ratios(server_rows: list[dict], raw_rows: list[dict], max_batch_size: int) -> dict:
    """Scheduling against scheduling, action against action, server against raw engine."""
    table = ServerTable(server_rows)
    raw = {(r["load"], r["batch_size"]): r["throughput_sps"] for r in raw_rows}

    def iteration_over_batch(load: str, c: int) -> float | None:
        return ratio(table.rps("iteration", load, c), table.rps("batch", load, c))

    def straight_over_loop_all(s: str, c: int) -> float | None:
        return ratio(table.p50(s, "mixed", c, "straight"), table.p50(s, "mixed", c, "loop_all"))

    def kept_straight_over_all_straight(s: str, c: int) -> float | None:
        return ratio(table.p50(s, "adaptive", c, "straight"), table.p50(s, "straight", c))

    def loop_all_iteration_over_batch(load: str, c: int) -> float | None:
        return ratio(table.p50("iteration", load, c, "loop_all"),
                     table.p50("batch", load, c, "loop_all"))  # fmt: skip

    def server_over_raw(s: str, load: str, c: int) -> float | None:
        # The server batches at most min(c, max_batch_size) requests: compare with that size.
        return ratio(table.rps(s, load, c), raw.get((load, min(c, max_batch_size))))

    levels = table.levels
    return {
        "throughput_iteration_over_batch": {
            load: {str(c): iteration_over_batch(load, c) for c in levels} for load in table.loads
        },
        "mixed_straight_p50_over_loop_all_p50": {
            s: {str(c): straight_over_loop_all(s, c) for c in levels} for s in table.schedulings
        },
        "loop_all_p50_iteration_over_batch": {
            load: {str(c): loop_all_iteration_over_batch(load, c) for c in levels}
            for load in table.loads
            if load in ("mixed", OPEN_LOAD)
        },
        "adaptive_straight_p50_over_all_straight_p50": {
            s: {str(c): kept_straight_over_all_straight(s, c) for c in levels}
            for s in table.schedulings
        },
        "server_over_raw": {
            s: {load: {str(c): server_over_raw(s, load, c) for c in levels} for load in table.loads}
            for s in table.schedulings
        },
    }


class ServerTable:
    """The server rows by (scheduling, load, concurrency)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = {(r["scheduling"], r["load"], r["concurrency"]): r for r in rows}
        self.schedulings = sorted({s for s, _, _ in self.rows})
        self.loads = sorted({load for _, load, _ in self.rows})
        self.levels = sorted({c for _, _, c in self.rows})

    def rps(self, scheduling: str, load: str, c: int) -> float | None:
        row = self.rows.get((scheduling, load, c))
        return row["throughput_rps"] if row else None

    def p50(self, scheduling: str, load: str, c: int, action: str | None = None) -> float | None:
        row = self.rows.get((scheduling, load, c))
        if row is None:
            return None
        if action is None:
            return row["latency_ms"]["p50"]
        answered = row["by_action"].get(action)
        return answered["latency_ms"]["p50"] if answered else None


def ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top and bottom else None


def check_targets(ratios: dict, server_rows: list[dict], agree: dict) -> dict:
    """The targets at concurrency CHECK_LEVEL, each with its measured value and verdict."""
    level = str(CHECK_LEVEL)

    def at(*path: str) -> float | None:
        node: object = ratios
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, int | float) else None

    measured = {
        "mixed_straight_p50_over_loop_all_p50": at(
            "mixed_straight_p50_over_loop_all_p50", "iteration", level
        ),
        "mixed_throughput_iteration_over_batch": at(
            "throughput_iteration_over_batch", "mixed", level
        ),
        "adaptive_straight_p50_over_all_straight_p50": at(
            "adaptive_straight_p50_over_all_straight_p50", "iteration", level
        ),
        "mixed_loop_all_p50_iteration_over_batch": at(
            "loop_all_p50_iteration_over_batch", "mixed", level
        ),
        "open_mixed_loop_all_p50_iteration_over_batch": at(
            "loop_all_p50_iteration_over_batch", OPEN_LOAD, level
        ),
    }
    checks: dict = {}
    for name, target in TARGETS.items():
        value = measured[name]
        at_least = name in AT_LEAST
        holds = None if value is None else (value >= target if at_least else value <= target)
        checks[name] = {"concurrency": CHECK_LEVEL, "value": value, "target": target,
                        "at_least" if at_least else "at_most": True, "holds": holds}  # fmt: skip
    differing = sum(r["answers_differing"] for r in server_rows)
    compared = sum(r["answers_compared"] for r in server_rows)
    checks["answers_under_load_equal_answers_alone"] = {
        "compared": compared,
        "differing": differing,
        "holds": compared > 0 and differing == 0,
    }
    checks["answers_alone_same_in_both_schedulings"] = {"holds": agree["holds"]}
    return checks
