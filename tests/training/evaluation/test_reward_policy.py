import pytest
import torch

from model.config import ModelConfig
from model.network import build_model
from training.evaluation.reward import max_layer_evaluations, reward
from training.trainer.policy import bounded_probs, expected_reward_loss, policy_loss


def test_reward_values():
    correct = torch.tensor([True, True, False, True])
    actions = torch.tensor([0, 1, 2, 3])
    evals = torch.tensor([3, 11, 15, 21])
    r = reward(correct, actions, evals, alpha=0.5, beta=0.3, normalizer=21.0)
    expected = [0.5, 0.5 - 0.3 * 11 / 21 * 1, 0.0 - 0.3 * 15 / 21 * 2, 0.5 - 0.3 * 1.0 * 3]
    assert r.tolist() == pytest.approx(expected)
    assert max_layer_evaluations(6) == 21  # straight 3 + loop_all 3 layers × 6 iterations


def test_bounded_probs_keep_every_action_reachable():
    logits = torch.tensor([[20.0, -20.0, -20.0, -20.0]])
    p = bounded_probs(logits, prob_floor=0.2)
    assert p.sum().item() == pytest.approx(1.0)
    assert p.min().item() >= 0.05 - 1e-6


def test_policy_gradient_moves_probability_to_the_higher_reward_action():
    torch.manual_seed(0)
    agent = torch.nn.Linear(5, 4)
    profile = torch.randn(64, 5)
    action_reward = torch.tensor([0.0, 0.1, 0.5, 0.2])  # action 2 pays best
    sampled = torch.arange(64) % 4  # fixed batch: every action tried equally often
    before = agent(profile).softmax(-1).mean(0)
    logits = agent(profile)
    greedy = logits.argmax(-1)  # self-critical baseline: the greedy action's reward
    advantage = action_reward[sampled] - action_reward[greedy]
    loss = policy_loss(logits, sampled, advantage, gamma=1.0, entropy_weight=0.0, prob_floor=0.1)
    loss.loss.backward()
    torch.optim.SGD(agent.parameters(), lr=0.5).step()
    after = agent(profile).softmax(-1).mean(0)
    change = after - before
    assert change.argmax().item() == 2 and change[2] > 0
    assert change[0] < 0  # the worst action loses probability


def test_zero_advantage_leaves_only_the_entropy_term():
    logits = torch.zeros(3, 4, requires_grad=True)
    loss = policy_loss(logits, torch.tensor([0, 1, 2]), torch.zeros(3), 0.2, 0.0, 0.1)
    loss.loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_agent_term_never_reaches_the_backbone():
    net = build_model(ModelConfig(width=8, max_iter=4))
    straight = net.straight(torch.randn(4, 3, 32, 32))
    logits = net.agent(straight.profile)
    adv = torch.tensor([1.0, -1.0, 0.5, 0.0])
    policy_loss(logits, torch.tensor([0, 1, 2, 3]), adv, 0.2, 0.01, 0.1).loss.backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.agent.parameters())


def test_expected_reward_gradient_equals_the_exhaustive_reinforce_expectation():
    # ∇ E_p[R] = Σ_a p_a (R_a − b) ∇log p_a: the score-function estimator averaged over every
    # action, weighted by its probability, must equal the exact estimator's gradient.
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    rewards = torch.rand(6, 4, generator=gen, dtype=torch.float64)
    exact = torch.autograd.grad(expected_reward_loss(logits, rewards, 1.0, 0.0).loss, logits)[0]

    probs = logits.softmax(-1).detach()
    baseline = (probs * rewards).sum(-1, keepdim=True)
    score = logits.log_softmax(-1)  # (B, A)
    reinforce = -(probs * (rewards - baseline) * score).sum(-1).mean()
    want = torch.autograd.grad(reinforce, logits)[0]
    torch.testing.assert_close(exact, want)


def test_expected_reward_loss_routes_each_sample_to_its_own_best_action():
    torch.manual_seed(0)
    agent = torch.nn.Linear(4, 4)
    profile = torch.eye(4).repeat(8, 1)  # 4 kinds of input, 8 of each
    rewards = torch.eye(4)[[2, 0, 3, 1]].repeat(8, 1)  # kind k pays only for action best[k]
    opt = torch.optim.SGD(agent.parameters(), lr=1.0)
    for _ in range(200):
        opt.zero_grad()
        expected_reward_loss(agent(profile), rewards, gamma=1.0, entropy_weight=0.0).loss.backward()
        opt.step()
    assert agent(profile[:4]).argmax(-1).tolist() == [2, 0, 3, 1]


def test_unknown_estimator_is_refused_and_the_registry_matches_the_config():
    from training.config import POLICY_ESTIMATORS, AgentConfig
    from training.trainer.steps import ESTIMATORS

    assert set(ESTIMATORS) == set(POLICY_ESTIMATORS)
    with pytest.raises(ValueError, match="estimator"):
        AgentConfig(estimator="a2c")
