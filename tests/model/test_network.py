"""DynaLayNet: actions run exactly their layers, grouped batches equal per-sample runs."""

import dataclasses

import pytest
import torch

from model.actions import ACTIONS, layer_evaluations, looped_layers
from model.config import ModelConfig
from model.network import ModuleParts, build_model, finish, loop_iteration, straight_pass
from model.solvers import fixed_point_iter
from tests.model.conftest import TINY_LSTM, cnn_batch, lstm_batch


def _count_layer_rows(net):
    """Forward hooks counting rows (samples) each loopable layer processes."""
    counts = [0, 0, 0]
    for i, layer in enumerate(net.backbone.layers):

        def hook(_module, inputs, _output, i=i):
            counts[i] += inputs[0].shape[0]

        layer.register_forward_hook(hook)
    return counts


def _run(net, arch, actions):
    if arch == "cnn":
        return net(cnn_batch(len(actions)), actions)
    tokens, lengths = lstm_batch(len(actions))
    return net(tokens, actions, lengths=lengths)


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
@pytest.mark.parametrize("action", range(4))
def test_each_action_runs_exactly_its_layers(arch, action, tiny_cnn, tiny_lstm):
    net = tiny_cnn if arch == "cnn" else tiny_lstm
    counts = _count_layer_rows(net)
    batch = 4
    with torch.no_grad():
        out = _run(net, arch, torch.full((batch,), action))
    n_iter = out.iterations
    # Straight pass: each layer once per sample. A loop of k layers: layers 1..k once per
    # iteration, layers k+1..3 once more after the loop.
    for i in range(3):
        extra = n_iter.sum().item() if i < action else (batch if action > 0 else 0)
        assert counts[i] == batch + extra, f"layer{i + 1}"
    assert sum(counts) == int(out.layer_evaluations.sum())
    assert (out.actions == action).all()
    if action == 0:
        assert (n_iter == 0).all() and out.converged.all()
        assert torch.equal(out.logits, out.straight_logits)
    else:
        assert (n_iter >= 1).all()
    assert len(looped_layers(action)) == action


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
def test_mixed_batch_equals_each_sample_alone(arch, tiny_cnn, tiny_lstm):
    net = tiny_cnn if arch == "cnn" else tiny_lstm
    actions = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    if arch == "cnn":
        x, lengths = cnn_batch(8), None
    else:
        x, lengths = lstm_batch(8)
    counts = _count_layer_rows(net)
    with torch.no_grad():
        batched = net(x, actions, lengths=lengths)
        executed = sum(counts)
        for i in range(8):
            alone = net(
                x[i : i + 1],
                actions[i : i + 1],
                lengths=None if lengths is None else lengths[i : i + 1],
            )
            assert torch.allclose(batched.logits[i], alone.logits[0], atol=1e-5)
            assert batched.iterations[i] == alone.iterations[0]
            assert batched.layer_evaluations[i] == alone.layer_evaluations[0]
    assert executed == int(batched.layer_evaluations.sum())
    expected = [
        layer_evaluations(int(a), int(n)) for a, n in zip(actions, batched.iterations, strict=True)
    ]
    assert batched.layer_evaluations.tolist() == expected


def test_lstm_padding_does_not_change_the_answer(tiny_lstm):
    tokens, lengths = lstm_batch(4, t=10)
    padded = torch.cat([tokens, torch.zeros(4, 7, dtype=torch.long)], dim=1)
    actions = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        a = tiny_lstm(tokens, actions, lengths=lengths)
        b = tiny_lstm(padded, actions, lengths=lengths)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
def test_loops_converge_at_default_settings(arch):
    # Default width and tolerance, random init: report and require convergence.
    torch.manual_seed(0)
    if arch == "cnn":
        net = build_model(ModelConfig(width=64)).eval()
        x, lengths = torch.randn(32, 3, 32, 32), None
    else:
        net = build_model(ModelConfig(arch="lstm", n_classes=2, vocab_size=500)).eval()
        x = torch.randint(1, 500, (32, 40))
        lengths = torch.full((32,), 40)
    shares = []
    for action in (1, 2, 3):
        with torch.no_grad():
            out = net(x, torch.full((32,), action), lengths=lengths)
        shares.append(out.converged.float().mean().item())
        assert (out.iterations <= net.config.max_iter).all()
    print(arch, "converged share per looped action", shares)
    assert min(shares) >= 0.9


def test_agent_decides_when_no_actions_given(tiny_cnn):
    with torch.no_grad():
        greedy = tiny_cnn(cnn_batch(6))
        sampled = tiny_cnn(cnn_batch(6), sample=True)
    assert torch.equal(greedy.actions, greedy.agent_logits.argmax(1))
    assert sampled.actions.shape == (6,) and sampled.actions.max() < len(ACTIONS)


def test_agent_gradient_does_not_reach_backbone(tiny_cnn):
    net = tiny_cnn.train()
    out = net(cnn_batch(4), torch.zeros(4, dtype=torch.long))
    out.agent_logits.sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert any(p.grad is not None for p in net.agent.parameters())


def test_training_forward_backpropagates_through_loops(tiny_cnn):
    net = tiny_cnn.train()
    out = net(cnn_batch(4), torch.tensor([0, 1, 2, 3]))
    torch.nn.functional.cross_entropy(out.logits, torch.arange(4)).backward()
    grads = [p.grad for p in net.backbone.layers.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_embed_dropout_acts_in_training_only_and_keeps_loops_deterministic():
    tokens, lengths = lstm_batch()
    torch.manual_seed(0)
    plain = build_model(dataclasses.replace(TINY_LSTM, embed_dropout=0.0)).double()
    dropped = build_model(dataclasses.replace(TINY_LSTM, embed_dropout=0.5)).double()
    dropped.load_state_dict(plain.state_dict())  # dropout has no weights: same parameters
    loop_all = torch.full((len(tokens),), 3)

    plain.eval(), dropped.eval()
    want = plain(tokens, actions=loop_all, lengths=lengths).logits
    got = dropped(tokens, actions=loop_all, lengths=lengths).logits
    torch.testing.assert_close(got, want)  # eval: identity

    dropped.train()
    torch.manual_seed(1)
    train_out = dropped(tokens, actions=loop_all, lengths=lengths)
    assert not torch.allclose(train_out.logits, want)  # train: embeddings are dropped
    # The dropout sits in the stem, outside the fixed-point map, so the loops still converge.
    assert bool(train_out.converged.all())


# ---- the piece API: the same network, one piece at a time -----------------------------------


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
def test_straight_pass_from_parts_is_the_network_straight_pass(arch, tiny_cnn, tiny_lstm):
    net = tiny_cnn if arch == "cnn" else tiny_lstm
    x, lengths = (cnn_batch(5), None) if arch == "cnn" else lstm_batch(5)
    with torch.no_grad():
        want = net.straight(x, lengths)
        got = straight_pass(ModuleParts(net), x, lengths)
        agent = ModuleParts(net).agent(got.profile)
    for a, b in zip((*want.inj, *want.states, want.logits, want.profile),
                    (*got.inj, *got.states, got.logits, got.profile), strict=True):  # fmt: skip
        assert torch.equal(a, b)
    assert torch.equal(agent, net.decide(want)[1])


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
@pytest.mark.parametrize("action", [1, 2, 3])
def test_loop_iteration_and_finish_compose_to_the_forward(arch, action, tiny_cnn, tiny_lstm):
    """Iterating `loop_iteration` with the model's solver, then `finish`, is the forward pass."""
    net = tiny_cnn if arch == "cnn" else tiny_lstm
    x, lengths = (cnn_batch(4), None) if arch == "cnn" else lstm_batch(4)
    parts = ModuleParts(net)
    with torch.no_grad():
        want = net(x, torch.full((4,), action), lengths=lengths)
        passed = straight_pass(parts, x, lengths)
        z, stats = fixed_point_iter(
            lambda z, *inj: loop_iteration(parts, action, z, inj),
            passed.states[action - 1],
            passed.inj,
            net.config.tol,
            net.config.max_iter,
        )
        logits = finish(parts, action, z, passed.inj)
    assert torch.equal(logits, want.logits)
    assert torch.equal(stats.iterations, want.iterations)
