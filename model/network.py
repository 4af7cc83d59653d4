"""DynaLayNet: a straight pass, the agent's choice, and per-group fixed-point recomputation.

    x ─stem─▶ u ─L1─▶ z1 ─L2─▶ z2 ─L3─▶ z3 ─head─▶ straight logits
                    profile(z1, z2, z3, confidence) ─agent─▶ action a
    a = 0: keep the straight logits
    a = k: iterate L_k∘…∘L1 to a fixed point from z_k, run the remaining layers once, head
    a = tta (when the config offers it): the straight pass on three more views of x, the four
            views' logits averaged

The straight pass runs batched for every sample. Each looped action then runs only on its own
samples (gathered by index), and inside a loop converged samples drop out, so the layer
evaluations that are reported are the ones that executed. The model returns data (logits and
per-sample stats); it never logs.
"""

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.actions import ACTIONS, N_LAYERS, TTA, TTA_VIEWS, n_actions
from model.agent import AgentNet, choose_actions
from model.backbones import build_backbone
from model.backward import solve_loop
from model.config import AGENT_INPUTS, ModelConfig

CONFIDENCE_FEATURES = 2  # the profile's last entries: top probability and entropy


@dataclass(frozen=True)
class StraightPass:
    inj: tuple[Tensor, ...]  # stem output u (+ mask for text), batch-first
    states: tuple[Tensor, ...]  # z1, z2, z3 after one pass
    logits: Tensor  # (B, C), or (B, T, V) for a language model
    profile: Tensor  # (B, P) agent input, detached: the agent's loss never moves the backbone
    x: Tensor | None = None  # the input batch, kept for the views of action `tta`


@dataclass(frozen=True)
class ForwardOutput:
    logits: Tensor  # (B, C) final logits of each sample's action ((B, T, V) for task "lm")
    straight_logits: Tensor  # (B, C) or (B, T, V)
    actions: Tensor  # (B,) long
    agent_logits: Tensor  # (B, 4)
    iterations: Tensor  # (B,) long, fixed-point iterations (0 for straight)
    converged: Tensor  # (B,) bool (True for straight)
    residual: Tensor  # (B,) float, final relative residual (0 for straight)
    layer_evaluations: Tensor  # (B,) long, executed single-layer evaluations incl. straight pass


class DynaLayNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config)
        profile_dim = N_LAYERS * self.backbone.summary_dim + CONFIDENCE_FEATURES
        self.n_actions = n_actions(config.tta_action)
        tail_only = AGENT_INPUTS[config.agent_inputs]  # confidence features read alone
        raw_tail = CONFIDENCE_FEATURES if config.agent_raw_confidence or tail_only else 0
        # The action ids the agent may choose (ModelConfig.agent_choices; all when empty).
        chosen = sorted(ACTIONS.index(name) for name in config.agent_choices)
        self.agent_choices = tuple(chosen) or tuple(range(self.n_actions))
        self.agent = AgentNet(
            profile_dim,
            config.agent_hidden,
            self.n_actions,
            raw_tail,
            self.agent_choices,
            tail_only=tail_only,
        )

    def forward(
        self,
        x: Tensor,
        actions: Tensor | None = None,
        lengths: Tensor | None = None,
        sample: bool = False,
    ) -> ForwardOutput:
        straight = self.straight(x, lengths)
        if actions is None:
            actions, agent_logits = self.decide(straight, sample)
        else:
            agent_logits = self.agent(straight.profile)
        return self.recompute(straight, actions, agent_logits)

    def straight(self, x: Tensor, lengths: Tensor | None = None) -> StraightPass:
        inj = self.backbone.stem(x, lengths)
        h, states = inj[0], []
        for layer in self.backbone.layers:
            h = layer(h, *inj)
            states.append(h)
        logits = self.backbone.head(h, *inj)
        summaries = [self.backbone.pool(z, *inj) for z in states]
        profile = torch.cat([*summaries, confidence_features(logits)], dim=1).detach()
        return StraightPass(tuple(inj), tuple(states), logits, profile, x)

    def decide(self, straight: StraightPass, sample: bool = False) -> tuple[Tensor, Tensor]:
        agent_logits = self.agent(straight.profile)
        return choose_actions(agent_logits, sample), agent_logits

    def recompute(
        self, straight: StraightPass, actions: Tensor, agent_logits: Tensor | None = None
    ) -> ForwardOutput:
        if agent_logits is None:
            agent_logits = self.agent(straight.profile)
        actions = actions.to(device=straight.logits.device, dtype=torch.long)
        batch = actions.shape[0]
        device = straight.logits.device
        logits = straight.logits
        iterations = torch.zeros(batch, dtype=torch.long, device=device)
        converged = torch.ones(batch, dtype=torch.bool, device=device)
        residual = torch.zeros(batch, device=device)
        if batch and int(actions.max()) >= self.n_actions:
            raise ValueError(f"this model's actions are 0..{self.n_actions - 1}")
        for action in range(1, self.n_actions):
            idx = (actions == action).nonzero(as_tuple=True)[0]
            if idx.numel() == 0:
                continue
            if action == TTA:
                group_logits = tta_logits(ModuleParts(self), straight.x[idx], straight.logits[idx])
                logits = logits.index_put((idx,), group_logits.to(logits.dtype))
                continue
            group_logits, stats = self._loop(straight, action, idx)
            logits = logits.index_put((idx,), group_logits.to(logits.dtype))
            iterations[idx] = stats.iterations
            converged[idx] = stats.converged
            residual[idx] = stats.residual.to(residual.dtype)
        evals = _layer_evaluations(actions, iterations)
        return ForwardOutput(
            logits, straight.logits, actions, agent_logits, iterations, converged, residual, evals
        )

    def _loop(self, straight: StraightPass, action: int, idx: Tensor):
        """Iterate the first `action` layers to a fixed point on samples idx, finish, head."""
        layers = self.backbone.layers
        inj = tuple(t[idx] for t in straight.inj)

        def composite(z: Tensor, *inj_: Tensor) -> Tensor:
            for layer in layers[:action]:
                z = layer(z, *inj_)
            return z

        z0 = straight.states[action - 1][idx]
        z, stats = solve_loop(composite, z0, inj, self.config, self.config.backward)
        for layer in layers[action:]:
            z = layer(z, *inj)
        return self.backbone.head(z, *inj), stats


def confidence_features(logits: Tensor) -> Tensor:
    """Top probability and entropy of the straight prediction. (B, C) → (B, 2).

    The last two entries of the agent's profile. Per-token logits (B, T, V) of a language model
    give the sequence's mean over its tokens.

    >>> sure, unsure = confidence_features(torch.tensor([[10.0, -10.0], [0.0, 0.0]])).tolist()
    >>> [round(v, 3) for v in sure], [round(v, 3) for v in unsure]  # entropy of a coin: ln 2
    ([1.0, 0.0], [0.5, 0.693])
    """
    if logits.ndim == 3:
        return confidence_features(logits.flatten(0, 1)).view(*logits.shape[:2], 2).mean(1)
    logp = F.log_softmax(logits.float(), dim=1)
    top = logp.max(dim=1).values.exp()
    entropy = -(logp.exp() * logp).sum(dim=1)
    return torch.stack([top, entropy], dim=1).to(logits.dtype)


def _layer_evaluations(actions: Tensor, iterations: Tensor) -> Tensor:
    """Vectorised `model.actions.layer_evaluations`: 3 + k·n + (3 − k) for a loop k, 3·4 for
    `tta`. (B,) → (B,).

    >>> actions, iterations = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 5, 5, 5, 0])
    >>> _layer_evaluations(actions, iterations).tolist()
    [3, 10, 14, 18, 12]
    >>> from model.actions import layer_evaluations  # the scalar form agrees
    >>> [layer_evaluations(a, 5) for a in range(5)]
    [3, 10, 14, 18, 12]
    """
    looped = N_LAYERS + actions * iterations + (N_LAYERS - actions)
    evals = torch.where(actions == 0, N_LAYERS, looped)
    return torch.where(actions == TTA, N_LAYERS * TTA_VIEWS, evals)


def build_model(config: ModelConfig) -> DynaLayNet:
    return DynaLayNet(config)


# ---- step API: the same algorithm, one piece at a time, whatever runtime evaluates the parts ----
#
# A serving engine that schedules loops iteration by iteration needs the network cut into the
# pieces it interleaves: the straight pass (for the agent), one iteration of an action's
# composite L_k∘…∘L1, and the finish (layers k+1..3 once more, then the head). `NetworkParts`
# is what a runtime supplies (PyTorch modules here, ONNX sessions in the service); the
# functions below compose the parts exactly as `straight` / `_loop` do.


class NetworkParts(Protocol):
    """The pieces of a DynaLay network, batch-first; `inj` is the stem's output tuple."""

    def stem(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, ...]: ...

    def layer(self, index: int, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor: ...

    def head(self, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor: ...

    def profile(
        self, states: tuple[Tensor, ...], logits: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor: ...

    def agent(self, profile: Tensor) -> Tensor: ...


class ModuleParts:
    """`NetworkParts` of a DynaLayNet, evaluated by its own PyTorch modules."""

    def __init__(self, net: DynaLayNet) -> None:
        self.net = net
        self.backbone = net.backbone

    def stem(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, ...]:
        return tuple(self.backbone.stem(x, lengths))

    def layer(self, index: int, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
        return self.backbone.layers[index](h, *inj)

    def head(self, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
        return self.backbone.head(h, *inj)

    def profile(
        self, states: tuple[Tensor, ...], logits: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor:
        summaries = [self.backbone.pool(z, *inj) for z in states]
        return torch.cat([*summaries, confidence_features(logits)], dim=1).detach()

    def agent(self, profile: Tensor) -> Tensor:
        return self.net.agent(profile)


def straight_pass(parts: NetworkParts, x: Tensor, lengths: Tensor | None = None) -> StraightPass:
    """Stem, L1, L2, L3 once, head and the agent's profile: `DynaLayNet.straight` from parts."""
    inj = parts.stem(x, lengths)
    h, states = inj[0], []
    for index in range(N_LAYERS):
        h = parts.layer(index, h, inj)
        states.append(h)
    logits = parts.head(h, inj)
    profile = parts.profile(tuple(states), logits, inj)
    return StraightPass(inj, tuple(states), logits, profile, x)


def tta_views(x: Tensor) -> Tensor:
    """The three views `tta` adds to an image batch x (n, C, H, W) → (3n, C, H, W): the mirror
    image, then the image and its mirror each moved one pixel right and down (reflect padding).

    >>> x = torch.arange(4.0).view(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    >>> tta_views(x)[:, 0].tolist()
    [[[1.0, 0.0], [3.0, 2.0]], [[3.0, 2.0], [1.0, 0.0]], [[2.0, 3.0], [0.0, 1.0]]]
    """
    mirrored = x.flip(3)
    height, width = x.shape[2:]
    shifted = F.pad(torch.cat([x, mirrored]), (1, 1, 1, 1), mode="reflect")[..., :height, :width]
    return torch.cat([mirrored, shifted])


def tta_logits(parts: NetworkParts, x: Tensor, straight_logits: Tensor) -> Tensor:
    """Action `tta`: the straight pass on `tta_views(x)` in one batch (3, n, C), averaged with
    the straight logits (n, C) already computed on x itself → (n, C)."""
    views = straight_pass(parts, tta_views(x)).logits.view(TTA_VIEWS - 1, x.shape[0], -1)
    return (straight_logits + views.sum(0).to(straight_logits.dtype)) / TTA_VIEWS


def loop_iteration(parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
    """One application of action k's composite L_k∘…∘L1 to states z (n, ...) → (n, ...)."""
    for index in range(action):
        z = parts.layer(index, z, inj)
    return z


def finish(parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
    """Layers k+1..3 once on the fixed point z (n, ...), then the head → logits (n, C)."""
    for index in range(action, N_LAYERS):
        z = parts.layer(index, z, inj)
    return parts.head(z, inj)
