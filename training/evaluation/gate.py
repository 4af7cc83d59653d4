"""The confidence-gate baseline: loop when the straight pass is unsure.

Gate(t): input i takes `action` if its straight top probability < t, else stays straight.
Computed from the forced-action outcomes, so every point is what that gate would have scored on
exactly these inputs. The agent must beat this curve at matched compute to earn its keep.
"""

from __future__ import annotations

import numpy as np
import torch

from training.evaluation.collect import Outcomes

# Every 0.05, refined near 1 where a trained net's top probabilities pile up; 1.01 = loop all.
DEFAULT_THRESHOLDS = (
    *(round(float(t), 2) for t in np.linspace(0.0, 0.95, 20)),
    *(0.97, 0.98, 0.99, 0.995, 0.999, 1.01),
)


def gate_sweep(
    o: Outcomes, action: int = 3, thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
) -> list[dict[str, float]]:
    """Accuracy and mean layer evaluations per threshold (ascending compute)."""
    assert o.forced_correct is not None and o.forced_evaluations is not None
    rows = []
    for t in thresholds:
        loop = o.straight_top_prob < t  # (N,) bool
        correct = torch.where(loop, o.forced_correct[:, action], o.forced_correct[:, 0])
        evals = torch.where(loop, o.forced_evaluations[:, action], o.forced_evaluations[:, 0])
        macs = torch.where(loop, o.forced_macs[:, action], o.forced_macs[:, 0])
        rows.append(
            {
                "threshold": float(t),
                "loop_share": loop.float().mean().item(),
                "accuracy": correct.float().mean().item(),
                "mean_layer_evaluations": evals.float().mean().item(),
                "mean_macs": macs.double().mean().item(),
            }
        )
    return rows


def accuracy_at_compute(
    sweep: list[dict[str, float]], compute: float, key: str = "mean_macs"
) -> float:
    """Gate accuracy interpolated at a given mean compute (clamped to the curve's ends);
    `key` names the compute's unit."""
    xs = np.array([r[key] for r in sweep])
    ys = np.array([r["accuracy"] for r in sweep])
    order = np.argsort(xs, kind="stable")
    return float(np.interp(compute, xs[order], ys[order]))
