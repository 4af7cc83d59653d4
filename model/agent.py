"""AgentNet: reads the straight pass' activation profile, scores the model's actions."""

import torch
from torch import Tensor, nn

from model.actions import N_LOOP_ACTIONS


class AgentNet(nn.Module):
    """(B, P) profile → (B, n_actions) action logits. Starts uniform (zero last layer).

    raw_tail: the profile's last `raw_tail` features (the straight pass' top probability and
    entropy) skip the input LayerNorm. Normalised together with the layer summaries they are
    rescaled by each sample's own summary statistics, which blurs the one signal a confidence
    rule needs; 0 normalises everything (checkpoints from before the option).

    >>> AgentNet(profile_dim=5, hidden=8)(torch.randn(2, 5)).abs().max().item()
    0.0
    """

    def __init__(
        self, profile_dim: int, hidden: int, n_actions: int = N_LOOP_ACTIONS, raw_tail: int = 0
    ) -> None:
        super().__init__()
        norm = PartialLayerNorm(profile_dim, raw_tail) if raw_tail else nn.LayerNorm(profile_dim)
        self.net = nn.Sequential(
            norm,
            nn.Linear(profile_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, n_actions),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, profile: Tensor) -> Tensor:
        return self.net(profile)


class PartialLayerNorm(nn.Module):
    """LayerNorm over all but the last `raw_tail` features, which pass unchanged. (B, P) → (B, P).

    >>> x = torch.tensor([[1.0, 3.0, 0.5]])
    >>> PartialLayerNorm(3, raw_tail=1)(x).round(decimals=3).tolist()
    [[-1.0, 1.0, 0.5]]
    """

    def __init__(self, profile_dim: int, raw_tail: int) -> None:
        super().__init__()
        self.raw_tail = raw_tail
        self.norm = nn.LayerNorm(profile_dim - raw_tail)

    def forward(self, profile: Tensor) -> Tensor:
        head, tail = profile[:, : -self.raw_tail], profile[:, -self.raw_tail :]
        return torch.cat([self.norm(head), tail], dim=1)


def choose_actions(agent_logits: Tensor, sample: bool) -> Tensor:
    """Sampled actions in training, greedy at inference. (B, n_actions) → (B,) long.

    >>> choose_actions(torch.tensor([[0.1, 2.0, 0.3, 0.0], [5.0, 0.0, 0.0, 0.0]]), sample=False)
    tensor([1, 0])
    """
    if sample:
        return torch.distributions.Categorical(logits=agent_logits).sample()
    return agent_logits.argmax(dim=1)
