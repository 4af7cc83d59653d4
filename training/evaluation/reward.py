"""The per-sample reward of the thesis (eq. 3.13): R = α·correct − β·cost·k.

k    = the layers an action runs again (model.actions.cost_layers): the number of consecutive
       looped layers for a loop (0 straight, 1 loop_l1, 2 loop_l1_l2, 3 loop_all), and all
       three for `tta`, which reruns the whole pass on each of its views.
cost = layer evaluations actually executed for the sample (ForwardOutput.layer_evaluations,
       straight pass = 3 included) divided by a normaliser, by default the most a sample can
       cost: loop_all at max_iter, 3 + 3·max_iter — so cost ∈ (0, 1] and β sets the trade-off.
"""

from __future__ import annotations

import torch

from model.actions import N_LAYERS, TTA

STRAIGHT_EVALUATIONS = 3  # L1, L2, L3 once


def cost_normalizer(agent, net) -> float:
    """The cost that counts as 1 in the reward: AgentConfig.cost_normalizer, else the costliest
    action's (in layer evaluations or multiply-adds, as AgentConfig.cost says)."""
    if agent.cost_normalizer:
        return agent.cost_normalizer
    if agent.cost == "macs":
        return max_macs(net)
    return float(max_layer_evaluations(net.config.max_iter))


def max_macs(net) -> float:
    """The costliest action's multiply-adds for one sample at max_iter (text: per token)."""
    one = torch.zeros(1, dtype=torch.long)
    per_action = [
        net.action_macs.per_sample(one + a, one + net.config.max_iter) for a in range(net.n_actions)
    ]
    return float(max(int(m) for m in per_action))


def max_layer_evaluations(max_iter: int) -> int:
    """Worst case per sample: the straight pass plus loop_all (3 layers) for max_iter steps."""
    return STRAIGHT_EVALUATIONS + 3 * max_iter


def reward(
    correct: torch.Tensor,
    actions: torch.Tensor,
    spent: torch.Tensor,
    alpha: float,
    beta: float,
    normalizer: float,
    cost: str = "layers",
) -> torch.Tensor:
    """correct bool (B,), actions long (B,) in 0..4, spent (B,) → R float (B,).

    cost "layers": spent = layer evaluations, R = α·correct − β·(spent / normalizer)·k (the
    thesis). cost "macs": spent = multiply-adds, R = α·correct − β·spent / normalizer, the
    count itself saying what an action costs (normalizer: the costliest action's MACs)."""
    share = spent.to(torch.float64) / normalizer
    if cost == "macs":
        return alpha * correct.to(torch.float32) - beta * share.to(torch.float32)
    k = torch.where(actions == TTA, N_LAYERS, actions).to(torch.float32)
    return alpha * correct.to(torch.float32) - beta * share.to(torch.float32) * k
