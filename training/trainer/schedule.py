"""Learning-rate schedules as pure functions of the backbone optimiser update count (nothing to
checkpoint but the count)."""

from __future__ import annotations

SCHEDULES = ("constant", "onecycle", "linear")


def lr_factor(
    update: int, total: int, kind: str, ramp_frac: float = 0.0, final: float = 0.0
) -> float:
    """Multiplier on the peak lr at optimiser update `update` of `total`.

    onecycle: linear 0 → 1 over ramp_frac·total updates, then linear 1 → final (the short-run
    CIFAR schedule of airbench / ResNet speed runs); linear: 1 → final; constant: 1.
    """
    if kind == "constant" or total <= 0:
        return 1.0
    t = min(max(update, 0), total) / total
    if kind == "onecycle":
        if ramp_frac > 0 and t < ramp_frac:
            return max(t / ramp_frac, 0.02)
        return 1.0 + (final - 1.0) * (t - ramp_frac) / max(1.0 - ramp_frac, 1e-9)
    if kind == "linear":
        return 1.0 + (final - 1.0) * t
    raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")
