"""The staged layout: stages of their own shapes, swept in Gauss-Seidel order (model/loops.py)."""

import pytest
import torch

from model.config import ModelConfig
from model.loops import pack, unpack
from model.network import ModuleParts, anytime_logits, build_model, fixed_point_logits

CONFIG = ModelConfig(arch="cnn", stem="staged", stage_widths=(8, 16, 16), tol=0.0, max_iter=3)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return build_model(CONFIG).double().eval()


def _x(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)).double()


def _by_hand(net, x, sweeps: int) -> torch.Tensor:
    """The staged network written out: each stage from its own injection, then sweeps."""
    b = net.backbone
    u = b.stem(x)[0]
    inj = [u]
    z = [b.layers[0](u, u)]
    for i in (1, 2):
        inj.append(b.transitions[i - 1](z[-1]))
        z.append(b.layers[i](inj[i], inj[i]))
    for _ in range(sweeps - 1):
        below = u
        for i in range(3):
            u_i = below if i == 0 else b.transitions[i - 1](below)
            z[i] = b.layers[i](z[i], u_i)
            below = z[i]
    return b.head(z[2], u)


def test_states_have_three_shapes_and_pack_round_trips(net):
    straight = net.straight(_x())
    shapes = [tuple(z.shape[1:]) for z in straight.states]
    assert shapes == [(8, 15, 15), (16, 7, 7), (16, 3, 3)]
    packed = pack(straight.states)
    assert packed.shape == (4, sum(c * h * w for c, h, w in shapes))
    for got, want in zip(unpack(packed, shapes), straight.states, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("iterations", [1, 3])
def test_loop_all_is_iterations_more_sweeps_written_out(iterations):
    torch.manual_seed(0)
    net = build_model(ModelConfig(**{**CONFIG.to_dict(), "max_iter": iterations})).double().eval()
    x = _x()
    with torch.no_grad():
        out = net(x, torch.full((4,), 3))
        want = _by_hand(net, x, iterations + 1)
        exits = anytime_logits(ModuleParts(net), x, iterations + 1)
    assert out.iterations.tolist() == [iterations] * 4
    torch.testing.assert_close(out.logits, want)
    torch.testing.assert_close(exits[-1], want)
    torch.testing.assert_close(exits[0], net.straight(x).logits)


def test_a_loop_answer_does_not_depend_on_its_batch_mates(net):
    x = _x(6)
    with torch.no_grad():
        together = net(x, torch.tensor([0, 1, 2, 3, 1, 3])).logits
        alone = torch.cat([net(x[i : i + 1], torch.tensor([a])).logits
                           for i, a in enumerate([0, 1, 2, 3, 1, 3])])  # fmt: skip
    torch.testing.assert_close(together, alone)


def test_detached_early_exits_train_only_the_head():
    torch.manual_seed(0)
    net = build_model(CONFIG)
    exits = anytime_logits(ModuleParts(net), _x().float(), 3, detach_early=True)
    exits[0].sum().backward()  # an early exit
    assert net.backbone.fc.weight.grad is not None
    assert all(p.grad is None for p in net.backbone.layers.parameters())
    exits[-1].sum().backward()  # the last exit reaches the layers
    assert all(p.grad is not None for p in net.backbone.layers.parameters())


def test_frozen_leading_iterations_carry_no_gradient():
    torch.manual_seed(0)
    net = build_model(CONFIG)
    exits = anytime_logits(ModuleParts(net), _x().float(), 4, frozen=2)
    assert len(exits) == 2  # iterations 3 and 4 are scored
    exits[-1].sum().backward()
    assert net.backbone.prelude[1].weight.grad is not None  # the injection still trains


def _one_step_by_hand(net, x, iterations: int) -> torch.Tensor:
    """`iterations` sweeps written out, the first iterations - 1 without a gradient: the last
    sweep's gradient reaches the layers, and the stem through the injections."""
    b = net.backbone
    u = b.stem(x)[0]
    with torch.no_grad():
        z = [b.layers[0](u, u)]
        for i in (1, 2):
            z_in = b.transitions[i - 1](z[-1])
            z.append(b.layers[i](z_in, z_in))
        for _ in range(iterations - 2):
            below = u
            for i in range(3):
                z[i] = b.layers[i](z[i], below if i == 0 else b.transitions[i - 1](below))
                below = z[i]
    below = u
    for i in range(3):
        z[i] = b.layers[i](z[i], below if i == 0 else b.transitions[i - 1](below))
        below = z[i]
    return b.head(z[2], u)


def test_fixed_point_logits_differentiate_through_the_last_iteration_only():
    torch.manual_seed(0)
    net = build_model(CONFIG).double()
    x = _x()
    logits, z, fz = fixed_point_logits(ModuleParts(net), x, 4)
    assert z.requires_grad and fz.shape == z.shape
    logits.square().sum().backward()
    got = {n: p.grad.clone() for n, p in net.backbone.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    want = _one_step_by_hand(net, x, 4)
    torch.testing.assert_close(logits, want)
    want.square().sum().backward()
    expected = {n: p.grad for n, p in net.backbone.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys() and "prelude.1.weight" in got
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, msg=name)
