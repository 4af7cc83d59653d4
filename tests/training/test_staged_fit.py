"""The staged recipes end to end on synthetic CIFAR files: an anytime fit 1 evaluated on the
held-out validation images, then an agent fit paid in multiply-adds."""

import json

import pytest
import torch

from model.checkpoint import load_checkpoint
from model.config import ModelConfig
from model.network import build_model
from training.cli import main
from training.data.holdout import holdout_indices, split_holdout
from training.data.split import ImageSplit
from training.trainer.anytime import OBJECTIVES, anytime_loss, jacobian_penalty

TINY = ["--model", "stage_widths=[8,16,16]", "--batch-size", "32", "--max-batches", "2"]


def test_the_validation_split_is_fixed_disjoint_and_balanced_in_size():
    train, val = holdout_indices(1000, size=100)
    again_train, again_val = holdout_indices(1000, size=100)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert len(val) == 100 and not set(val.tolist()) & set(train.tolist())
    images = torch.arange(1000, dtype=torch.uint8).repeat_interleave(3 * 4).view(1000, 3, 2, 2)
    kept, held = split_holdout(ImageSplit(images, torch.arange(1000) % 10, ("c",) * 10), 100)
    assert torch.equal(held.labels, val % 10) and len(kept) == 900


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_anytime_objective_gives_a_finite_loss_and_gradient(name):
    torch.manual_seed(0)
    net = build_model(ModelConfig(stem="staged", stage_widths=(8, 8, 8)))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    gen = torch.Generator().manual_seed(0)
    loss, exits, draw = anytime_loss(name, net, x, y, 0.5, gen, 0.1)
    loss.backward()
    fixed_point = OBJECTIVES[name].jacobian is not None  # scores the reached state only
    assert torch.isfinite(loss)
    assert len(exits) == (1 if fixed_point else draw.iterations - draw.frozen)
    assert net.backbone.layers[2].conv1.weight.grad.abs().sum() > 0


def test_the_jacobian_penalty_estimates_the_frobenius_norm_per_element():
    # f(z) = z Aᵀ: J = A for every sample, so E_v ‖vᵀJ‖² / (B·D) = ‖A‖²_F / D.
    a = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    z = torch.randn(20_000, 6).requires_grad_()
    penalty = jacobian_penalty(z @ a.T, z, torch.Generator().manual_seed(1))
    assert penalty.item() == pytest.approx(a.square().sum().item() / 6, rel=0.03)


@pytest.fixture(scope="module")
def staged_runs(tmp_path_factory, cifar10_dir):
    root = tmp_path_factory.mktemp("staged")
    base, agent = root / "base", root / "agent"
    common = ["--dataset", "cifar10", "--data-dir", str(cifar10_dir), "--quiet", "--validation",
              "32", "--threads", "1", *TINY]  # fmt: skip
    argv = ["fit", "--preset", "staged", "--backbone-epochs", "1", "--out", str(base)]
    assert main([*argv, "--run-dir", str(root / "base-run"), *common]) == 0
    argv = ["fit", "--preset", "staged-agent", "--init-from", str(base), "--out", str(agent)]
    assert main([*argv, "--run-dir", str(root / "agent-run"), *common]) == 0
    return base, agent


def test_fit_one_is_scored_on_the_held_out_images(staged_runs):
    base, _ = staged_runs
    ckpt = load_checkpoint(base)
    assert ckpt.metrics["split"] == "validation" and ckpt.metrics["n"] == 32
    assert ckpt.config.stem == "staged"
    history = json.loads((base / "history.json").read_text())
    assert history[0]["train"]["iterations_loop"] == 5.0  # objective "depth": 5 iterations


def test_the_agent_fit_is_paid_in_multiply_adds(staged_runs):
    _, agent = staged_runs
    ckpt = load_checkpoint(agent)
    m = ckpt.metrics
    assert m["reward"]["cost"] == "macs"
    straight = m["forced"]["straight"]["mean_macs"]
    assert m["forced"]["loop_all"]["mean_macs"] > straight > 0
    assert m["forced"]["tta"]["mean_macs"] == pytest.approx(4 * straight, rel=0.01)
    assert straight <= m["mean_macs"] <= m["forced"]["tta"]["mean_macs"]
