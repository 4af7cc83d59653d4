"""Policy-gradient pieces for the agent: bounded sampling, self-critical REINFORCE, entropy.

The reward is not differentiable (a correctness bit and a sampled action), so "CE − γ·R" gives
the agent no gradient by itself. The agent's term is the score-function estimator
    L_agent = −γ · mean[(R(a_sampled) − R(a_greedy)) · log p̃(a_sampled)] − η · mean[H(p)]
with the greedy action's reward as a self-critical baseline (BlockDrop) and p̃ the bounded
behaviour policy p̃ = (1−ε)·p + ε/4 actually sampled from (so no action ever starves).

With only four actions the expectation can also be taken exactly: measure every action's
reward R(x, a) and use
    L_agent = −γ · mean[Σ_a p(a|x) · (R(x, a) − b(x))] − η · mean[H(p)],   b = Σ_a p·R (detached)
whose gradient is ∇E_p[R] itself, with no sampling noise. It costs a forward of every looped
mode per batch (no backward through the backbone), and it is what lets the agent learn *which*
inputs profit from a loop: with a correctness bit as reward, a sampled action's advantage is 0
for all but the few samples where the modes disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.agent import allowed


@dataclass(frozen=True)
class PolicyLoss:
    loss: torch.Tensor  # scalar, differentiable w.r.t. the agent only
    entropy: torch.Tensor  # scalar, detached
    advantage: torch.Tensor  # scalar mean advantage, detached


def bounded_probs(agent_logits: torch.Tensor, prob_floor: float) -> torch.Tensor:
    """(B, A) logits → (B, A) probabilities mixed with ε of uniform over the agent's choices:
    each of its n choices ≥ ε/n, an action it may not choose (model.agent.allowed) stays 0."""
    probs = agent_logits.softmax(dim=-1)
    choices = allowed(agent_logits).float()
    uniform = choices / choices.sum(dim=-1, keepdim=True)
    return (1.0 - prob_floor) * probs + prob_floor * uniform


def sample_actions(
    agent_logits: torch.Tensor, prob_floor: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One action per sample from the bounded policy; (B, A) → long (B,)."""
    probs = bounded_probs(agent_logits.detach(), prob_floor)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def greedy_actions(agent_logits: torch.Tensor) -> torch.Tensor:
    return agent_logits.argmax(dim=-1)


def policy_loss(
    agent_logits: torch.Tensor,
    actions: torch.Tensor,
    advantage: torch.Tensor,
    gamma: float,
    entropy_weight: float,
    prob_floor: float,
) -> PolicyLoss:
    """REINFORCE loss. agent_logits (B, A) with grad; actions long (B,); advantage float (B,)."""
    log_probs = bounded_probs(agent_logits, prob_floor).log()  # (B, A)
    chosen = log_probs.gather(1, actions[:, None]).squeeze(1)  # (B,)
    probs = agent_logits.softmax(dim=-1)
    entropy = -(probs * agent_logits.log_softmax(dim=-1)).sum(dim=-1).mean()
    loss = -gamma * (advantage.detach() * chosen).mean() - entropy_weight * entropy
    return PolicyLoss(loss, entropy.detach(), advantage.detach().mean())


def expected_reward_loss(
    agent_logits: torch.Tensor, rewards: torch.Tensor, gamma: float, entropy_weight: float
) -> PolicyLoss:
    """Exact policy gradient. agent_logits (B, A) with grad; rewards (B, A), every action's."""
    probs = agent_logits.softmax(dim=-1)  # (B, A)
    rewards = rewards.detach()
    baseline = (probs.detach() * rewards).sum(dim=-1, keepdim=True)  # (B, 1)
    expected_advantage = (probs * (rewards - baseline)).sum(dim=-1)  # (B,), value 0, grad ∇E[R]
    entropy = -(probs * agent_logits.log_softmax(dim=-1)).sum(dim=-1).mean()
    loss = -gamma * expected_advantage.mean() - entropy_weight * entropy
    best_gain = (rewards.max(dim=-1).values - baseline.squeeze(-1)).mean()  # room left to learn
    return PolicyLoss(loss, entropy.detach(), best_gain.detach())
