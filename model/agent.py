"""AgentNet: reads the straight pass' activation profile, scores the model's actions."""

import torch
from torch import Tensor, nn

from model.actions import N_LOOP_ACTIONS


class AgentNet(nn.Module):
    """(B, P) profile → (B, n_actions) action logits. Starts uniform (zero last layer).

    >>> AgentNet(profile_dim=5, hidden=8)(torch.randn(2, 5)).abs().max().item()
    0.0
    """

    def __init__(self, profile_dim: int, hidden: int, n_actions: int = N_LOOP_ACTIONS) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(profile_dim),
            nn.Linear(profile_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, n_actions),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, profile: Tensor) -> Tensor:
        return self.net(profile)


def choose_actions(agent_logits: Tensor, sample: bool) -> Tensor:
    """Sampled actions in training, greedy at inference. (B, n_actions) → (B,) long.

    >>> choose_actions(torch.tensor([[0.1, 2.0, 0.3, 0.0], [5.0, 0.0, 0.0, 0.0]]), sample=False)
    tensor([1, 0])
    """
    if sample:
        return torch.distributions.Categorical(logits=agent_logits).sample()
    return agent_logits.argmax(dim=1)
