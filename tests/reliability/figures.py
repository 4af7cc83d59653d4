"""The numbers a reliability run reports (fuzz cases, load held, requests lost, RSS).

Tests record them here; conftest prints them in pytest's terminal summary, so `make reliability`
ends with the figures docs/reliability.md reports.
"""

from __future__ import annotations

RECORDED: dict[str, object] = {}


def record(name: str, value: object) -> None:
    RECORDED[name] = value


def add(name: str, amount: int) -> None:
    RECORDED[name] = int(RECORDED.get(name, 0)) + amount  # type: ignore[arg-type]


def lines() -> list[str]:
    return [f"{name}: {value}" for name, value in sorted(RECORDED.items())]
