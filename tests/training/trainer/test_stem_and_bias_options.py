"""bias_lr_scale (the norms' shifts train faster) and freeze_stem (only layers and head train)."""

import torch

from model.config import ModelConfig
from model.network import build_model
from training.config import OptimConfig, merge
from training.fit import fit
from training.recipes import preset
from training.trainer.optim import build_optimizers, set_lr, stem_modules

TINY = ModelConfig(stem="whiten-deep", width=16, stem_width=8, loop_convs=1, max_iter=4)


def test_bias_lr_scale_puts_the_shifts_in_their_own_faster_group():
    net = build_model(TINY)
    opt = build_optimizers(
        net, OptimConfig(optimizer="sgd", lr=0.5, weight_decay=1e-3, bias_lr_scale=64.0)
    )["backbone"]
    fast = opt.param_groups[2]
    shifts = {
        id(m.bias)
        for m in net.backbone.modules()
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm))
    }
    shifts.add(id(net.backbone.whiten.bias))
    assert {id(p) for p in fast["params"]} == shifts
    assert fast["lr"] == 32.0 and abs(fast["weight_decay"] * fast["lr"] - 1e-3 * 0.5) < 1e-12
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25, 16.0]
    # The whitening weight and the recipe BatchNorm scales are frozen: in no group.
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net.backbone.whiten.weight) not in trained


def test_default_bias_lr_scale_keeps_two_groups():
    net = build_model(TINY)
    opt = build_optimizers(net, OptimConfig(optimizer="sgd", lr=0.5))["backbone"]
    assert len(opt.param_groups) == 2


def test_freeze_stem_trains_only_layers_and_head(tmp_path, cifar10_dir):
    base = {
        "data": {"dataset": "cifar10", "data_dir": str(cifar10_dir)},
        "optim": {"batch_size": 32},
        "model": {"width": 16, "stem_width": 8, "max_iter": 3},
        "threads": 1,
        "eval_subset": None,
    }
    first = merge(preset("fast-deep"), {**base, "phases": {"backbone_epochs": 1}})
    fit(first, tmp_path / "a", tmp_path / "ra", quiet=True)
    second = merge(
        preset("fast-deep-loops"),
        {**base, "phases": {"backbone_epochs": 1}, "init_from": str(tmp_path / "a")},
    )
    result = fit(second, tmp_path / "b", tmp_path / "rb", quiet=True)
    from model.checkpoint import load_checkpoint

    before, after = load_checkpoint(tmp_path / "a").net, load_checkpoint(tmp_path / "b").net
    for m_before, m_after in zip(stem_modules(before), stem_modules(after), strict=True):
        for (name, t0), (_, t1) in zip(
            m_before.state_dict().items(), m_after.state_dict().items(), strict=True
        ):
            assert torch.equal(t0, t1), name  # weights and BatchNorm statistics alike
    layer0, layer1 = before.backbone.layers[0].conv.weight, after.backbone.layers[0].conv.weight
    assert not torch.equal(layer0, layer1)
    assert not torch.equal(before.backbone.fc.weight, after.backbone.fc.weight)
    assert result.history[-1]["train"]["ce_loop"] > 0
