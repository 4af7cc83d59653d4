from unittest.mock import patch

import torch

from training.config import merge
from training.recipes import preset
from training.trainer.optim import build_optimizers
from training.trainer.policy import expected_reward_loss
from training.trainer.session import build_net
from training.trainer.steps import StepContext, agent_step, backbone_step, joint_step
from training.trainer.steps import _reward as _reward_of

CFG = merge(preset("tiny"), {"model": {"max_iter": 4}})


def _setup():
    net = build_net(CFG, 10, torch.device("cpu"))
    ctx = StepContext(net, CFG, 15.0, torch.Generator().manual_seed(0))
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(12) % 10
    return net, ctx, x, y


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


def test_backbone_step_trains_straight_and_loops_not_the_agent():
    net, ctx, x, y = _setup()
    result = backbone_step(ctx, x, y)
    result.loss.backward()
    assert all(p.grad is None for p in net.agent.parameters())
    grads = [p.grad for p in net.backbone.layers.parameters()]
    assert all(g is not None for g in grads)  # every loop layer is trained
    assert result.stats["iterations_loop"] > 0


def test_agent_step_moves_only_the_agent():
    net, ctx, x, y = _setup()
    opts = build_optimizers(net, CFG.optim)
    backbone, agent = _snapshot(net.backbone), _snapshot(net.agent)
    result = agent_step(ctx, x, y)
    result.loss.backward()
    opts["agent"].step()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert not _changed(backbone, net.backbone) and _changed(agent, net.agent)
    assert {"reward", "entropy", "sampled_0"} <= set(result.stats)


def test_joint_step_trains_both():
    net, ctx, x, y = _setup()
    result = joint_step(ctx, x, y)
    result.loss.backward()
    assert any(p.grad is not None for p in net.backbone.parameters())
    assert any(p.grad is not None for p in net.agent.parameters())
    assert result.greedy.shape == (12,)


def test_all_actions_estimator_uses_each_forced_action_reward():
    # Reference: every action forced on the whole batch, its reward measured on its own; the
    # step's gradient must equal the exact estimator's on those rewards.
    cfg = merge(CFG, {"agent": {"estimator": "all_actions", "beta": 0.1}})
    net = build_net(cfg, 10, torch.device("cpu")).double()
    ctx = StepContext(net, cfg, 15.0, torch.Generator().manual_seed(0))
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(1)).double()
    y = torch.arange(12) % 10
    agent_step(ctx, x, y).loss.backward()
    got = [p.grad.clone() for p in net.agent.parameters()]

    net.zero_grad()
    with torch.no_grad():
        straight = net.straight(x)
        columns = []
        for a in range(4):
            acts = torch.full((12,), a)
            out = net.recompute(straight, acts)
            columns.append(_reward_of(ctx, out, y, acts))
    logits = net.agent(straight.profile)
    a = cfg.agent
    expected_reward_loss(logits, torch.stack(columns, 1), a.gamma, a.entropy).loss.backward()
    for g, p in zip(got, net.agent.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


def test_backbone_step_without_loop_weight_runs_only_the_straight_pass():
    cfg = merge(CFG, {"phases": {"loop_weight": 0.0, "straight_weight": 1.0}})
    net = build_net(cfg, 10, torch.device("cpu"))
    ctx = StepContext(net, cfg, 15.0, torch.Generator().manual_seed(0))
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6)
    calls = []
    for layer in net.backbone.layers:
        layer.register_forward_hook(lambda *_: calls.append(1))
    result = backbone_step(ctx, x, y)
    assert len(calls) == 3  # each loopable layer once: no loop ran
    expected = torch.nn.functional.cross_entropy(net.straight(x).logits, y)
    assert torch.allclose(result.loss, expected, atol=1e-6)


def test_loop_focus_weights_the_samples_the_straight_pass_gets_wrong():
    from training.trainer.steps import loop_loss

    cfg = merge(CFG, {"phases": {"loop_focus": 2.0}, "optim": {"label_smoothing": 0.0}})
    net = build_net(cfg, 10, torch.device("cpu"))
    ctx = StepContext(net, cfg, 15.0, torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1])
    straight = torch.tensor([[20.0] + [0.0] * 9, [20.0] + [0.0] * 9])  # right on 0, wrong on 1
    loop = torch.randn(2, 10, generator=torch.Generator().manual_seed(2))
    ce = torch.nn.functional.cross_entropy(loop, y, reduction="none")
    # sample 0 has p_straight(y) ≈ 1 → weight ≈ 0; sample 1 carries the (mean-1) weight 2
    assert torch.allclose(loop_loss(ctx, None, straight, loop, y), ce[1], atol=1e-4)


def test_flip_teacher_targets_the_mirror_averaged_straight_pass():
    from training.trainer.steps import loop_loss

    cfg = merge(CFG, {"phases": {"loop_teacher": "flip", "loop_teacher_weight": 1.0}})
    net = build_net(cfg, 10, torch.device("cpu")).eval()
    ctx = StepContext(net, cfg, 15.0, torch.Generator().manual_seed(0))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(3)
    with torch.no_grad():
        s = net.straight(x).logits
        teacher = (0.5 * (s + net.straight(x.flip(3)).logits)).softmax(1)
    loop = torch.randn(3, 10, generator=torch.Generator().manual_seed(2))
    expected = -(teacher * loop.log_softmax(1)).sum(1).mean()
    assert torch.allclose(loop_loss(ctx, x, s, loop, y), expected, atol=1e-6)


def test_all_actions_with_tta_measures_five_rewards_and_replay_refits_on_them():
    import copy

    from training.trainer.distributed import Runtime
    from training.trainer.steps import replay_agent

    cfg = merge(
        CFG,
        {
            "agent": {"estimator": "all_actions", "beta": 0.1, "replay_epochs": 2},
            "model": {"tta_action": True},
        },
    )
    net = build_net(cfg, 10, torch.device("cpu"))
    ctx = StepContext(net, cfg, 15.0, torch.Generator().manual_seed(0))
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(12) % 10
    agent_step(ctx, x, y)
    ((profile, rewards),) = ctx.rewards_seen
    assert profile.shape[0] == 12 and rewards.shape == (12, 5)
    with torch.no_grad():  # the tta column is the reward of the views' answer
        tta = net.recompute(net.straight(x), torch.full((12,), 4))
    torch.testing.assert_close(rewards[:, 4], _reward_of(ctx, tta, y, torch.full((12,), 4)))

    by_hand = copy.deepcopy(net.agent)
    opt = build_optimizers(net, cfg.optim)["agent"]
    opt_by_hand = torch.optim.Adam(by_hand.parameters(), lr=cfg.optim.agent_lr)
    log = replay_agent(ctx, opt, Runtime(0, 1, torch.device("cpu")))
    for _ in range(2):
        opt_by_hand.zero_grad()
        a = cfg.agent
        expected_reward_loss(by_hand(profile), rewards, a.gamma, a.entropy).loss.backward()
        opt_by_hand.step()
    assert log["replay_steps"] == 2 and ctx.rewards_seen == []
    for got, want in zip(net.agent.parameters(), by_hand.parameters(), strict=True):
        torch.testing.assert_close(got, want)


def test_all_actions_with_agent_choices_runs_only_those_and_keeps_the_rest_at_zero():
    from training.trainer.policy import bounded_probs

    cfg = merge(
        CFG,
        {
            "agent": {"estimator": "all_actions", "beta": 0.1, "replay_epochs": 1},
            "model": {"tta_action": True, "agent_choices": ["straight", "tta"]},
        },
    )
    net = build_net(cfg, 10, torch.device("cpu"))
    ctx = StepContext(net, cfg, 15.0, torch.Generator().manual_seed(0))
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.arange(12) % 10
    with patch.object(net, "_loop", wraps=net._loop) as loop:  # a spy: every looped group
        result = agent_step(ctx, x, y)
    ((_, rewards),) = ctx.rewards_seen
    assert loop.call_count == 0  # no loop ran: the agent cannot choose one
    for barred in (1, 2, 3):  # their column repeats straight's (probability 0 anyway)
        assert torch.equal(rewards[:, barred], rewards[:, 0])
    with torch.no_grad():
        tta = net.recompute(net.straight(x), torch.full((12,), 4))
    torch.testing.assert_close(rewards[:, 4], _reward_of(ctx, tta, y, torch.full((12,), 4)))
    assert set(result.greedy.tolist()) <= {0, 4}
    probs = bounded_probs(net.agent(net.straight(x).profile), 0.1)
    assert torch.equal(probs[:, 1:4], torch.zeros(12, 3))
    assert (probs[:, [0, 4]] >= 0.05).all()  # the floor spreads over its two choices
