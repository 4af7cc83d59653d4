"""AgentNet: reads the straight pass' activation profile, scores the model's actions."""

import torch
from torch import Tensor, nn

from model.actions import N_LOOP_ACTIONS

BARRED_LOGIT = -1e4  # added to the logit of an action the agent may not choose


class AgentNet(nn.Module):
    """(B, P) profile → (B, n_actions) action logits. Starts uniform over its choices (zero
    last layer).

    choices: the action ids the agent may pick (None: all). The others get BARRED_LOGIT added,
    so softmax gives them probability 0 and argmax never picks them; finite rather than −inf
    so that entropies and gradients stay finite (0 · log 0 would be NaN).

    raw_tail: the profile's last `raw_tail` features (the straight pass' top probability and
    entropy) skip the input LayerNorm. Normalised together with the layer summaries they are
    rescaled by each sample's own summary statistics, which blurs the one signal a confidence
    rule needs; 0 normalises everything (checkpoints from before the option).

    tail_only: read only the first `tail_only` features of the raw tail (0: the whole profile);
    the layer summaries are dropped, and the agent is a learnt rule on the straight pass'
    confidence, which transfers from the training images it learns on to unseen ones better
    than the summaries do (reports/cifar10/README.md).

    >>> AgentNet(profile_dim=5, hidden=8)(torch.randn(2, 5)).abs().max().item()
    0.0
    """

    def __init__(
        self,
        profile_dim: int,
        hidden: int,
        n_actions: int = N_LOOP_ACTIONS,
        raw_tail: int = 0,
        choices: tuple[int, ...] | None = None,
        tail_only: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= tail_only <= raw_tail:
            raise ValueError(f"tail_only must be in 0..raw_tail ({raw_tail}), got {tail_only}")
        bar = torch.full((n_actions,), BARRED_LOGIT)
        bar[list(range(n_actions) if choices is None else choices)] = 0.0
        # Rebuilt from the config, not stored: checkpoints keep their keys.
        self.register_buffer("bar", bar, persistent=False)
        if tail_only:
            norm, width = Tail(raw_tail, tail_only), tail_only
        elif raw_tail:
            norm, width = PartialLayerNorm(profile_dim, raw_tail), profile_dim
        else:
            norm, width = nn.LayerNorm(profile_dim), profile_dim
        self.net = nn.Sequential(
            norm,
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Linear(hidden, n_actions),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, profile: Tensor) -> Tensor:
        return self.net(profile) + self.bar


def allowed(agent_logits: Tensor) -> Tensor:
    """Which actions the agent may choose: (B, A) logits → (B, A) bool.

    >>> allowed(AgentNet(profile_dim=3, hidden=4, choices=(0, 2))(torch.randn(1, 3))).tolist()
    [[True, False, True, False]]
    """
    return agent_logits > BARRED_LOGIT / 2


class Tail(nn.Module):
    """The first `keep` of the last `n` features, unchanged: (B, P) → (B, keep).

    >>> Tail(2, keep=1)(torch.tensor([[5.0, 0.5, 0.25]])).tolist()
    [[0.5]]
    """

    def __init__(self, n: int, keep: int) -> None:
        super().__init__()
        self.start, self.stop = -n, (-n + keep) or None

    def forward(self, profile: Tensor) -> Tensor:
        return profile[:, self.start : self.stop]


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
