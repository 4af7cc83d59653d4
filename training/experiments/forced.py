"""Training step of a model forced to one action in training and test (no agent).

Action 0 is the plain 3-layer model (straight only); action 3 the DEQ-style always-loop_all
model; 1 and 2 are the thesis' ablation Models 1 and 2 (Fig 4.4). The loss is the cross-entropy
of that action's output only; the agent is never run (zero logits stand in for it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.actions import N_LOOP_ACTIONS
from training.experiments.timing import StepFn
from training.trainer.steps import StepContext, StepResult


def forced_step(action: int) -> StepFn:
    if not 0 <= action < N_LOOP_ACTIONS:
        raise ValueError(f"action must be in 0..{N_LOOP_ACTIONS - 1}, got {action}")

    def step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        straight = ctx.net.straight(x)
        actions = torch.full_like(y, action)
        no_agent = torch.zeros(y.shape[0], N_LOOP_ACTIONS, device=y.device)
        out = ctx.net.recompute(straight, actions, no_agent)
        loss = F.cross_entropy(out.logits, y, label_smoothing=ctx.cfg.optim.label_smoothing)
        stats = {
            "loss": loss.item(),
            "accuracy": (out.logits.detach().argmax(1) == y).float().mean().item(),
            "iterations": out.iterations.float().mean().item(),
            "layer_evaluations": out.layer_evaluations.float().mean().item(),
        }
        return StepResult(loss, stats, actions)

    return step
