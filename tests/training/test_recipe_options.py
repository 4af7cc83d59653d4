"""The fast recipe's named options each do what they say (the others have their own files:
test_lookahead.py, test_augment.py's alternating flip, test_config_state.py's schedules)."""

import math

import torch

from training.config import merge
from training.fit import fit
from training.recipes import preset
from training.trainer.objective import cross_entropy
from training.trainer.session import build_net


def test_label_smoothing_mixes_the_target_with_the_uniform_distribution():
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    y = torch.arange(5)
    logp = logits.log_softmax(1)
    eps = 0.2
    manual = -((1 - eps) * logp[torch.arange(5), y] + eps * logp.mean(1)).mean()
    assert torch.allclose(cross_entropy(logits, y, eps), manual, atol=1e-6)


def test_channels_last_puts_the_network_and_batches_in_nhwc():
    cfg = merge(preset("fast"), {"model": {"width": 16, "stem_width": 8}})
    net = build_net(cfg, 10, torch.device("cpu"))
    conv = net.backbone.layers[0].conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_fast_recipe_trains_a_whitened_net_end_to_end(tmp_path, cifar10_dir):
    """Two straight epochs of the fast recipe (shrunk) learn something on real-format data."""
    cfg = merge(
        preset("fast"),
        {
            "data": {"dataset": "cifar10", "data_dir": str(cifar10_dir)},
            "optim": {"batch_size": 32, "lr": 0.2},
            "phases": {"backbone_epochs": 2},
            "model": {"width": 16, "stem_width": 8, "max_iter": 4},
            "threads": 1,
            "eval_subset": None,
        },
    )
    result = fit(cfg, tmp_path / "ckpt", tmp_path / "run", quiet=True)
    losses = [r["train"]["loss"] for r in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[1] < losses[0]
    assert result.metrics["accuracy"] > 0.0
