"""Runs a trained net over a split and keeps per-sample outcomes (the raw data of evaluation)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch

from model.actions import N_LOOP_ACTIONS
from model.network import DynaLayNet


@dataclass(frozen=True)
class Outcomes:
    """Per-sample results over N samples (CPU tensors)."""

    labels: torch.Tensor  # (N,) long
    actions: torch.Tensor  # (N,) long, the agent's greedy choice
    correct: torch.Tensor  # (N,) bool, agent path
    layer_evaluations: torch.Tensor  # (N,) long, agent path
    macs: torch.Tensor  # (N,) long, multiply-adds of the agent path
    iterations: torch.Tensor  # (N,) long, agent path
    converged: torch.Tensor  # (N,) bool, agent path
    straight_top_prob: torch.Tensor  # (N,) float, max softmax of the straight pass
    straight_correct: torch.Tensor  # (N,) bool, the straight pass alone
    # Every input forced through each action: (N, n_actions) each; None when not collected.
    forced_correct: torch.Tensor | None = None
    forced_evaluations: torch.Tensor | None = None
    forced_macs: torch.Tensor | None = None
    forced_iterations: torch.Tensor | None = None
    forced_converged: torch.Tensor | None = None
    n_actions: int = N_LOOP_ACTIONS  # the model's actions: the first n of model.actions.ACTIONS

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@torch.no_grad()
def collect(
    net: DynaLayNet, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], forced: bool = True
) -> Outcomes:
    """Agent path for every batch (straight → decide → recompute), plus, if `forced`, the same
    inputs recomputed under each single action from the same straight pass."""
    was_training = net.training
    net.eval()
    parts: dict[str, list[torch.Tensor]] = {
        f.name: [] for f in fields(Outcomes) if f.name != "n_actions"
    }
    for x, y in batches:
        straight = net.straight(x)
        actions, agent_logits = net.decide(straight)
        out = net.recompute(straight, actions, agent_logits)
        row = {
            "labels": y,
            "actions": out.actions,
            "correct": out.logits.argmax(1) == y,
            "layer_evaluations": out.layer_evaluations,
            "macs": out.macs,
            "iterations": out.iterations,
            "converged": out.converged,
            "straight_top_prob": straight.logits.float().softmax(1).amax(1),
            "straight_correct": straight.logits.argmax(1) == y,
        }
        if forced:
            outs = [
                net.recompute(straight, torch.full_like(y, a), agent_logits)
                for a in range(net.n_actions)
            ]
            row["forced_correct"] = torch.stack([o.logits.argmax(1) == y for o in outs], 1)
            row["forced_evaluations"] = torch.stack([o.layer_evaluations for o in outs], 1)
            row["forced_macs"] = torch.stack([o.macs for o in outs], 1)
            row["forced_iterations"] = torch.stack([o.iterations for o in outs], 1)
            row["forced_converged"] = torch.stack([o.converged for o in outs], 1)
        for key, value in row.items():
            parts[key].append(value.cpu())
    net.train(was_training)
    tensors = {k: torch.cat(v) if v else None for k, v in parts.items()}
    return Outcomes(**tensors, n_actions=net.n_actions)
