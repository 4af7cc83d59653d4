"""The whitened-stem CNN: whitening filters, per-sample loops after a BatchNorm stem."""

import torch
import torch.nn.functional as F

from model.config import ModelConfig
from model.network import build_model
from model.whitening import patch_covariance, whitening_filters

TINY_WHITEN = ModelConfig(stem="whiten", width=16, stem_width=8, loop_convs=1, max_iter=30)


def _images(n: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=gen)  # correlated channels, like real colour images
    x = torch.randn(n, 3, 32, 32, generator=gen)
    return torch.einsum("dc,nchw->ndhw", mix, x)


def test_whitening_filters_decorrelate_the_patches():
    x = _images()
    w = whitening_filters(x, kernel=2, eps=0.0)
    assert w.shape == (24, 3, 2, 2)
    y = F.conv2d(x.double(), w.double())[:, :12]  # the second half is the negated first
    flat = y.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = flat.T @ flat / flat.shape[0]
    assert torch.allclose(cov, torch.eye(12, dtype=cov.dtype), atol=1e-3)
    assert torch.equal(w[12:], -w[:12])
    assert patch_covariance(x, 2).shape == (12, 12)


def test_whitened_stem_is_frozen_and_set_from_data():
    net = build_model(TINY_WHITEN)
    before = net.backbone.whiten.weight.clone()
    net.backbone.init_whitening(_images())
    assert not net.backbone.whiten.weight.requires_grad
    assert not torch.equal(before, net.backbone.whiten.weight)


def test_whitened_backbone_shapes_and_batch_independence_in_eval():
    torch.manual_seed(0)
    net = build_model(TINY_WHITEN).double()
    net.backbone.init_whitening(_images().double())
    net.train()
    net(_images(16).double())  # BatchNorm running statistics move in training
    net.eval()
    x = _images(6).double()
    actions = torch.tensor([0, 1, 2, 3, 1, 0])
    with torch.no_grad():
        out = net(x, actions)
        straight = net.straight(x)
        assert straight.inj[0].shape == (6, 16, 7, 7)
        for i in range(6):
            alone = net(x[i : i + 1], actions[i : i + 1])
            assert torch.allclose(out.logits[i], alone.logits[0], atol=1e-8)
            assert out.iterations[i] == alone.iterations[0]


def test_old_configs_keep_their_backbone():
    old = ModelConfig.from_dict({"arch": "cnn", "width": 8})  # no stem / loop_convs keys
    assert old.stem == "conv" and old.loop_convs == 2
    assert not hasattr(build_model(old).backbone, "whiten")


TINY_DEEP = ModelConfig(stem="whiten-deep", width=16, stem_width=8, loop_convs=1, max_iter=30)


def test_deep_stem_reaches_three_pixels_and_starts_each_conv_as_an_identity():
    net = build_model(TINY_DEEP)
    bb = net.backbone
    convs = [m for m in bb.modules() if isinstance(m, torch.nn.Conv2d) and m is not bb.whiten]
    assert len(convs) == 5 + 3  # two groups of two, one of one; three loop layers
    for conv in convs:
        n = min(conv.weight.shape[:2])
        assert torch.equal(conv.weight[:n], torch.nn.init.dirac_(torch.empty_like(conv.weight[:n])))
    norms = [m for m in bb.stem_layers if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 5 and all(not n.weight.requires_grad for n in norms)
    assert bb.stem(_images(2))[0].shape == (2, 16, 3, 3)


def test_deep_backbone_loops_are_batch_independent_in_eval():
    torch.manual_seed(0)
    net = build_model(TINY_DEEP).double()
    net.backbone.init_whitening(_images().double())
    net.train()
    net(_images(16).double())
    net.eval()
    x = _images(4).double()
    actions = torch.tensor([3, 1, 2, 0])
    with torch.no_grad():
        out = net(x, actions)
        for i in range(4):
            alone = net(x[i : i + 1], actions[i : i + 1])
            assert torch.allclose(out.logits[i], alone.logits[0], atol=1e-8)
