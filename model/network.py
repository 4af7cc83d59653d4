"""DynaLayNet: a straight pass, the agent's choice, and per-group fixed-point recomputation.

    x ─stem─▶ u ─L1─▶ z1 ─L2─▶ z2 ─L3─▶ z3 ─head─▶ straight logits
                    profile(z1, z2, z3, confidence) ─agent─▶ action a
    a = 0: keep the straight logits
    a = k: iterate L_k∘…∘L1 to a fixed point from z_k, run the remaining layers once, head
    a = tta (when the config offers it): the straight pass on three more views of x, the four
            views' logits averaged

How a loop iterates depends on the layout (model/loops.py): "chained" layers of one shape
iterate the composite L_k∘…∘L1; "staged" layers of their own shapes (model/staged.py) sweep
stages 1..k. Either way the network is composed from its parts by the piece functions at the end
of this module — the same functions a serving engine steps one iteration at a time — so there
is one straight pass, one loop iteration and one finish, whatever evaluates the parts.

The straight pass runs batched for every sample. Each looped action then runs only on its own
samples (gathered by index), and inside a loop converged samples drop out, so the layer
evaluations and multiply-adds that are reported are the ones that executed. The model returns
data (logits and per-sample stats); it never logs.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.actions import ACTIONS, N_LAYERS, TTA, TTA_VIEWS, n_actions
from model.agent import AgentNet, choose_actions
from model.backbones import build_backbone
from model.backward import solve_loop
from model.config import AGENT_INPUTS, ModelConfig
from model.loops import loop_kind
from model.macs import ActionMacs, measure, tokens_of
from model.parts import LoopKind, NetworkParts

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
    macs: Tensor  # (B,) long, executed multiply-adds incl. the straight pass (model/macs.py)


class DynaLayNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config)
        self.loops: LoopKind = loop_kind(config)
        profile_dim = sum(self.backbone.summary_dims) + CONFIDENCE_FEATURES
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
        # Counted on one sample at build time: the layout fixes it, the weights do not.
        self.action_macs: ActionMacs = self._count_macs()

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
        return straight_pass(ModuleParts(self), x, lengths)

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
        macs = self.action_macs.per_sample(actions, iterations, tokens_of(straight.inj))
        return ForwardOutput(
            logits,
            straight.logits,
            actions,
            agent_logits,
            iterations,
            converged,
            residual,
            evals,
            macs,
        )

    def _loop(self, straight: StraightPass, action: int, idx: Tensor):
        """Iterate action k's loop to a fixed point on samples idx, finish, head."""
        parts = ModuleParts(self)
        inj = tuple(t[idx] for t in straight.inj)
        z0 = loop_start(parts, action, straight)[idx]

        def iterate(z: Tensor, *inj_: Tensor) -> Tensor:
            return loop_iteration(parts, action, z, inj_)

        z, stats = solve_loop(iterate, z0, inj, self.config, self.config.backward)
        return finish(parts, action, z, inj), stats

    def _count_macs(self) -> ActionMacs:
        """Multiply-adds of each piece for one sample, counted once (model/macs.py)."""
        was_training = self.training
        self.eval()  # the count must not move BatchNorm's running statistics
        try:
            with torch.no_grad():
                return measure(
                    ModuleParts(self), self.loops, self._example, self.config.arch == "lstm"
                )
        finally:
            self.train(was_training)

    def _example(self, tokens: int) -> tuple[Tensor, Tensor | None]:
        """One input sample on the network's device: an image, or `tokens` token ids."""
        weight = next(self.parameters())
        device, cfg = weight.device, self.config
        if cfg.arch == "lstm":
            ids = torch.ones(1, tokens, dtype=torch.long, device=device)
            return ids, torch.tensor([tokens], device=device)
        shape = (1, cfg.in_channels, cfg.image_size, cfg.image_size)
        return torch.zeros(shape, device=device, dtype=weight.dtype), None


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


# ---- piece API: the algorithm, one piece at a time, whatever runtime evaluates the parts ---
#
# A serving engine that schedules loops iteration by iteration needs the network cut into the
# pieces it interleaves: the straight pass (for the agent), one iteration of an action's loop,
# and the finish (the layers above the loop once more, then the head). `NetworkParts`
# (model/parts.py) is what a runtime supplies (PyTorch modules here, ONNX sessions in the
# service); DynaLayNet itself runs on the functions below.


def profile_features(
    backbone: nn.Module, states: tuple[Tensor, ...], logits: Tensor, inj: tuple[Tensor, ...]
) -> Tensor:
    """The agent's input: each state's summary and the straight pass' confidence, (B, P)."""
    summaries = [backbone.pool(z, *inj) for z in states]
    return torch.cat([*summaries, confidence_features(logits)], dim=1)


class ModuleParts:
    """`NetworkParts` of a DynaLayNet, evaluated by its own PyTorch modules."""

    def __init__(self, net: DynaLayNet) -> None:
        self.net = net
        self.backbone = net.backbone
        self.loops = net.loops

    def stem(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, ...]:
        return tuple(self.backbone.stem(x, lengths))

    def injection(self, index: int, below: Tensor, inj: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return self.backbone.injection(index, below, inj)

    def layer(self, index: int, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
        return self.backbone.layers[index](h, *inj)

    def head(self, h: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
        return self.backbone.head(h, *inj)

    def profile(
        self, states: tuple[Tensor, ...], logits: Tensor, inj: tuple[Tensor, ...]
    ) -> Tensor:
        return profile_features(self.backbone, states, logits, inj).detach()

    def agent(self, profile: Tensor) -> Tensor:
        return self.net.agent(profile)


def straight_pass(parts: NetworkParts, x: Tensor, lengths: Tensor | None = None) -> StraightPass:
    """Stem, every layer once, head and the agent's profile."""
    inj = parts.stem(x, lengths)
    states = parts.loops.straight(parts, inj)
    logits = parts.head(states[-1], inj)
    profile = parts.profile(states, logits, inj)
    return StraightPass(inj, states, logits, profile, x)


def pass_logits(parts: NetworkParts, x: Tensor) -> Tensor:
    """The straight pass' logits alone (no profile): what each extra view of `tta` runs."""
    inj = parts.stem(x, None)
    return parts.head(parts.loops.straight(parts, inj)[-1], inj)


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
    views = pass_logits(parts, tta_views(x)).view(TTA_VIEWS - 1, x.shape[0], -1)
    return (straight_logits + views.sum(0).to(straight_logits.dtype)) / TTA_VIEWS


def anytime_logits(
    parts: NetworkParts,
    x: Tensor,
    iterations: int,
    detach_early: bool = False,
    frozen: int = 0,
    action: int = N_LAYERS,
) -> list[Tensor]:
    """Action k's logits after `frozen`+1..`iterations` iterations (the first iteration is the
    straight pass): each (B, C), a forced answer at that budget (k = loop_all by default).

    frozen: the first `frozen` iterations run without a gradient (truncated backprop from a
    random start). detach_early: the head reads the earlier exits' states without a gradient
    into the layers, so only the last exit trains them."""
    inj = parts.stem(x, None)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
        z = parts.loops.start(action, parts.loops.straight(parts, inj))
        for _ in range(max(frozen - 1, 0)):
            z = loop_iteration(parts, action, z, inj)
    out = []
    for t in range(frozen, iterations):
        if t:
            z = loop_iteration(parts, action, z, inj)
        top = parts.loops.finish(parts, action, z, inj)
        early = t < iterations - 1
        out.append(parts.head(top.detach() if early and detach_early else top, inj))
    return out


def fixed_point_logits(
    parts: NetworkParts, x: Tensor, iterations: int, action: int = N_LAYERS
) -> tuple[Tensor, Tensor, Tensor]:
    """Action k's answer after `iterations` iterations (the first is the straight pass), with a
    gradient through the last iteration only (a one-step phantom gradient at the near-fixed
    point, as deep-equilibrium training takes it): (logits (B, C), z (B, D) the state entering
    the last iteration, which requires grad, f(z) (B, D) the state leaving it)."""
    inj = parts.stem(x, None)
    with torch.no_grad():
        z = parts.loops.start(action, parts.loops.straight(parts, inj))
        for _ in range(iterations - 2):
            z = loop_iteration(parts, action, z, inj)
    z = z.detach().requires_grad_()
    fz = loop_iteration(parts, action, z, inj)
    return parts.head(parts.loops.finish(parts, action, fz, inj), inj), z, fz


def loop_start(parts: NetworkParts, action: int, straight: StraightPass) -> Tensor:
    """Action k's loop state from the straight pass, (B, ...)."""
    return parts.loops.start(action, straight.states)


def loop_iteration(parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
    """One iteration of action k's loop on states z (n, ...) → (n, ...)."""
    return parts.loops.iterate(parts, action, z, inj)


def finish(parts: NetworkParts, action: int, z: Tensor, inj: tuple[Tensor, ...]) -> Tensor:
    """The layers above action k's loop once on its result z (n, ...), then the head → (n, C)."""
    return parts.head(parts.loops.finish(parts, action, z, inj), inj)
