"""Optimizers: one for the backbone (scheduled), one for the agent (Adam, constant lr)."""

from __future__ import annotations

import torch
from torch import nn

from model.network import DynaLayNet
from training.config import OptimConfig

OPTIMIZERS = ("adam", "adamw", "sgd")
NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def build_optimizers(net: DynaLayNet, o: OptimConfig) -> dict[str, torch.optim.Optimizer]:
    """{"backbone": ..., "agent": ...}. No weight decay on norms and biases (1-D tensors).

    bias_lr_scale s ≠ 1 (the fast recipes): the norms' and the whitening conv's shifts train
    at s × the lr and decay at the weights' per-step rate (weight decay / s), so only their
    step size changes."""
    trained = [p for p in net.backbone.parameters() if p.requires_grad]
    decay = [p for p in trained if p.ndim > 1]
    # Shifts of normalised or whitened features: the norms' biases and the whitening conv's.
    shifted = [m for m in net.backbone.modules() if isinstance(m, NORMS) and m.bias is not None]
    shifted += [w] if (w := getattr(net.backbone, "whiten", None)) is not None else []
    scaled = o.bias_lr_scale != 1.0
    biases = [m.bias for m in shifted if m.bias.requires_grad and scaled]
    ids = {id(p) for p in biases}
    no_decay = [p for p in trained if p.ndim <= 1 and id(p) not in ids]
    groups = [
        {"params": decay, "weight_decay": o.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if biases:
        s = o.bias_lr_scale
        groups.append(
            {"params": biases, "lr": o.lr * s, "lr_scale": s, "weight_decay": o.weight_decay / s}
        )
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
    """Set the base lr; groups with an "lr_scale" (scaled biases) keep their multiple of it."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def stem_modules(net: DynaLayNet) -> list[nn.Module]:
    """The backbone's parts before the loopable layers: all but `layers`, the staged layout's
    `transitions` (they run inside its loops) and the head `fc`."""
    return [
        m
        for name, m in net.backbone.named_children()
        if name not in ("layers", "transitions", "fc")
    ]


def freeze_stem(net: DynaLayNet) -> None:
    """Stop the stem's weights training (call before build_optimizers, which skips them)."""
    for module in stem_modules(net):
        module.requires_grad_(False)


def stem_to_eval(net: DynaLayNet) -> None:
    """Keep a frozen stem's BatchNorm on its running statistics (call after net.train())."""
    for module in stem_modules(net):
        module.eval()
