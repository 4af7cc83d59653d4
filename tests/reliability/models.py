"""Checkpoints for the reliability tests: a compute-heavy CNN and sabotaged ones.

The load tests need a model whose *compute* bounds the capacity (not HTTP parsing), so that a
Python load generator on a 2-core machine can reach 4× that capacity: a wider CNN whose loops
iterate to a tight tolerance, with every request forcing the all-layer loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from model.actions import ACTIONS
from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ModelConfig
from model.network import DynaLayNet, build_model
from tests.service.helpers import CIFAR_CLASSES, IMAGE_PREP, TINY_CNN, reference_input

HEAVY_CNN = ModelConfig(arch="cnn", n_classes=10, width=192, tol=1e-6, max_iter=30)
HEAVY_ACTION = "loop_all"  # every request iterates all three layers


def write_cnn(
    directory: Path,
    name: str = "cifar10",
    config: ModelConfig = TINY_CNN,
    sabotage: Callable[[DynaLayNet], None] | None = None,
) -> Path:
    """A checkpoint of a seeded network, optionally sabotaged before saving (a valid file
    holding bad weights, as a broken training run would produce)."""
    torch.manual_seed(0)
    net = build_model(config).eval()
    if sabotage is not None:
        with torch.no_grad():
            sabotage(net)
    return save_checkpoint(
        directory / name,
        net,
        name=name,
        version="reliability-1",
        classes=CIFAR_CLASSES,
        preprocessing=IMAGE_PREP,
    )


@dataclass(frozen=True)
class Direct:
    label: str
    top_probability: float


def direct_answers(checkpoint: Path, images: list[Path], action: str | None) -> list[Direct]:
    """What the model itself says for each 32×32 PNG, without the service in between."""
    loaded = load_checkpoint(checkpoint)
    x = torch.cat([reference_input(path) for path in images])
    forced = None if action is None else torch.full((len(images),), ACTIONS.index(action))
    with torch.inference_mode():
        probabilities = loaded.net(x, actions=forced).logits.softmax(dim=1)
    top = probabilities.max(dim=1)
    return [
        Direct(loaded.classes[i], p)
        for i, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)
    ]
