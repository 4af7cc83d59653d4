"""Optimizers: one for the backbone (scheduled), one for the agent (Adam, constant lr)."""

from __future__ import annotations

import torch

from model.network import DynaLayNet
from training.config import OptimConfig

OPTIMIZERS = ("adam", "adamw", "sgd")


def build_optimizers(net: DynaLayNet, o: OptimConfig) -> dict[str, torch.optim.Optimizer]:
    """{"backbone": ..., "agent": ...}. No weight decay on norms and biases (1-D tensors)."""
    decay = [p for p in net.backbone.parameters() if p.ndim > 1]
    no_decay = [p for p in net.backbone.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": o.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if o.optimizer == "sgd":
        backbone = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)
    elif o.optimizer == "adam":
        backbone = torch.optim.Adam(groups, lr=o.lr)
    elif o.optimizer == "adamw":
        backbone = torch.optim.AdamW(groups, lr=o.lr)
    else:
        raise ValueError(f"unknown optimizer {o.optimizer!r}; expected one of {OPTIMIZERS}")
    agent = torch.optim.Adam(net.agent.parameters(), lr=o.agent_lr)
    return {"backbone": backbone, "agent": agent}


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
