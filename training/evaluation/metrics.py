"""Evaluation numbers from per-sample outcomes: what metrics.json ships with a checkpoint."""

from __future__ import annotations

from typing import Any

import torch

from model.actions import ACTIONS, N_LOOP_ACTIONS
from training.evaluation.collect import Outcomes
from training.evaluation.gate import accuracy_at_compute, gate_sweep
from training.evaluation.reward import reward


def _mean(t: torch.Tensor) -> float | None:
    return t.float().mean().item() if t.numel() else None


def cost_of(o: Outcomes, cost: str) -> torch.Tensor:
    """The agent path's per-sample cost in the reward's unit (AgentConfig.cost)."""
    return o.macs if cost == "macs" else o.layer_evaluations


def agent_summary(
    o: Outcomes, alpha: float, beta: float, normalizer: float, cost: str = "layers"
) -> dict[str, Any]:
    """Accuracy, compute, action use and reward of the agent's (greedy) path."""
    per_action: dict[str, Any] = {"accuracy": {}, "iterations": {}, "converged_share": {}}
    freq = {}
    for a, name in enumerate(ACTIONS[: o.n_actions]):
        m = o.actions == a
        freq[name] = m.float().mean().item()
        per_action["accuracy"][name] = _mean(o.correct[m])
        per_action["iterations"][name] = _mean(o.iterations[m])
        per_action["converged_share"][name] = _mean(o.converged[m])
    r = reward(o.correct, o.actions, cost_of(o, cost), alpha, beta, normalizer, cost)
    return {
        "n": len(o),
        "accuracy": _mean(o.correct),
        "straight_accuracy": _mean(o.straight_correct),
        "mean_layer_evaluations": _mean(o.layer_evaluations),
        "mean_macs": _mean(o.macs),
        "action_frequencies": freq,
        "accuracy_per_action": per_action["accuracy"],
        "iterations_per_action": per_action["iterations"],
        "converged_share_per_action": per_action["converged_share"],
        "converged_share": _mean(o.converged),
        "mean_reward": _mean(r),
        "actions_used_2pct": sum(f >= 0.02 for f in freq.values()),
    }


def forced_summary(o: Outcomes) -> dict[str, dict[str, float | None]]:
    """Each single action forced on every input."""
    assert o.forced_correct is not None
    return {
        name: {
            "accuracy": _mean(o.forced_correct[:, a]),
            "mean_layer_evaluations": _mean(o.forced_evaluations[:, a]),
            "mean_macs": _mean(o.forced_macs[:, a]),
            "mean_iterations": _mean(o.forced_iterations[:, a]),
            "converged_share": _mean(o.forced_converged[:, a]),
        }
        for a, name in enumerate(ACTIONS[: o.n_actions])
    }


def oracle_summary(o: Outcomes) -> dict[str, float | None]:
    """Per-sample oracle: right if any action is right, at the cheapest right action's cost."""
    fc = o.forced_correct
    any_right = fc.any(1)
    # The cheapest correct action in multiply-adds (straight when none is right).
    cheapest = torch.where(fc, o.forced_macs, torch.iinfo(o.forced_macs.dtype).max).argmin(1)
    cheapest = torch.where(any_right, cheapest, 0)[:, None]
    return {
        "accuracy": _mean(any_right),
        "mean_layer_evaluations": _mean(o.forced_evaluations.gather(1, cheapest)),
        "mean_macs": _mean(o.forced_macs.gather(1, cheapest)),
    }


def full_metrics(
    o: Outcomes,
    alpha: float,
    beta: float,
    normalizer: float,
    gate_action: int = N_LOOP_ACTIONS - 1,
    cost: str = "layers",
) -> dict[str, Any]:
    """Agent, forced actions, oracle, confidence-gate sweep and the checks a release is held to
    (the agent against the best forced action and the gate at its compute, not collapsed).
    `gate` reports the sweep of `gate_action` (loop_all by default); the best gate at the
    agent's compute is over every action's sweep, `tta` included where the model has it."""
    agent = agent_summary(o, alpha, beta, normalizer, cost)
    forced = forced_summary(o)
    sweeps = {ACTIONS[a]: gate_sweep(o, a) for a in range(1, o.n_actions)}
    # Compute is matched in multiply-adds: layer evaluations of different layers or of tta
    # views are not the same work.
    compute = agent["mean_macs"]
    gate_acc = accuracy_at_compute(sweeps[ACTIONS[gate_action]], compute)
    best_forced = max(forced.values(), key=lambda f: f["accuracy"] or 0.0)
    best_gate = max(accuracy_at_compute(s, compute) for s in sweeps.values())
    return {
        **agent,
        "forced": forced,
        "oracle": oracle_summary(o),
        "gate": {
            "action": ACTIONS[gate_action],
            "sweep": sweeps[ACTIONS[gate_action]],
            "sweeps_by_action": sweeps,
            "accuracy_at_agent_compute": gate_acc,
            "best_accuracy_at_agent_compute": best_gate,
        },
        "checks": {
            "agent_minus_best_forced_accuracy": agent["accuracy"] - best_forced["accuracy"],
            "agent_minus_gate_accuracy_at_matched_compute": agent["accuracy"] - gate_acc,
            "agent_minus_best_gate_accuracy_at_matched_compute": agent["accuracy"] - best_gate,
            "agent_minus_loop_all_layer_evaluations": agent["mean_layer_evaluations"]
            - forced["loop_all"]["mean_layer_evaluations"],
            "agent_macs_over_best_forced": agent["mean_macs"] / best_forced["mean_macs"],
            "not_collapsed": agent["actions_used_2pct"] >= 2,
        },
        "reward": {"alpha": alpha, "beta": beta, "cost_normalizer": normalizer, "cost": cost},
    }
