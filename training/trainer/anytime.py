"""Anytime objectives: the loss over loop_all's exits after each iteration, behind one registry.

A network trained as an anytime network answers at every iteration budget; the objective
decides whether more iterations make a better answer (a rising accuracy curve, which gives the
agent something to choose) or only the same one again. Each objective draws, per batch, how
many iterations to run and how many of the first run without a gradient, and weighs the exits
(`model.network.anytime_logits`). scripts/loop_objectives.py compares them on the validation
split; PhaseConfig.anytime names the one phase 1 trains with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from model.network import DynaLayNet, ModuleParts, anytime_logits, fixed_point_logits

Loss = Callable[[list[Tensor], Tensor, float], Tensor]  # (exits, labels, label smoothing)


@dataclass(frozen=True)
class Draw:
    iterations: int  # loop_all iterations this batch runs (the first is the straight pass)
    frozen: int = 0  # leading iterations without a gradient (their exits are not scored)


@dataclass(frozen=True)
class AnytimeObjective:
    draw: Callable[[float, torch.Generator], Draw]  # (progress in [0, 1], generator)
    detach_early: bool  # earlier exits train the head only
    loss: Loss
    # None: score the exits of model.network.anytime_logits. A number: fixed-point training
    # instead (model.network.fixed_point_logits: only the last iteration's answer, one-step
    # gradient) plus this weight × the Jacobian penalty at the state it reached.
    jacobian: float | None = None


def _ce(logits: Tensor, y: Tensor, smoothing: float) -> Tensor:
    return F.cross_entropy(logits.float(), y, label_smoothing=smoothing)


def _growing_weights(n: int) -> list[float]:
    return [t / (n * (n + 1) / 2) for t in range(1, n + 1)]  # t / Σt


def equal(exits: list[Tensor], y: Tensor, smoothing: float) -> Tensor:
    return sum(_ce(z, y, smoothing) for z in exits) / len(exits)


def growing(exits: list[Tensor], y: Tensor, smoothing: float) -> Tensor:
    weights = _growing_weights(len(exits))
    return sum(w * _ce(z, y, smoothing) for w, z in zip(weights, exits, strict=True))


def growing_distill(exits: list[Tensor], y: Tensor, smoothing: float) -> Tensor:
    """Growing weights; each earlier exit half CE, half KL to the last exit's (detached) answer."""
    teacher = F.softmax(exits[-1].detach().float(), dim=1)
    terms = [
        0.5 * _ce(z, y, smoothing)
        + 0.5 * F.kl_div(F.log_softmax(z.float(), dim=1), teacher, reduction="batchmean")
        for z in exits[:-1]
    ]
    terms.append(_ce(exits[-1], y, smoothing))
    weights = _growing_weights(len(exits))
    return sum(w * t for w, t in zip(weights, terms, strict=True))


def last_plus_early(exits: list[Tensor], y: Tensor, smoothing: float) -> Tensor:
    """The last exit, plus 0.2 × each earlier one (which read detached states)."""
    return _ce(exits[-1], y, smoothing) + 0.2 * sum(_ce(z, y, smoothing) for z in exits[:-1])


def last(exits: list[Tensor], y: Tensor, smoothing: float) -> Tensor:
    return _ce(exits[-1], y, smoothing)


def jacobian_penalty(fz: Tensor, z: Tensor, generator: torch.Generator) -> Tensor:
    """Hutchinson's estimate of ‖∂f/∂z‖²_F per element at z, E_v ‖vᵀJ‖² / numel with one
    v ~ N(0, I) (B, D): penalising it keeps the iteration contractive, so the fixed point is
    reached in few iterations and more of them do not wander (Jacobian regularisation)."""
    v = torch.randn(fz.shape, generator=generator, device=fz.device).to(fz.dtype)
    (vjp,) = torch.autograd.grad(fz, z, v, create_graph=True)
    return vjp.float().pow(2).sum() / v.numel()


def _uniform(low: int, high: int, g: torch.Generator) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=g, device=g.device))


OBJECTIVES: dict[str, AnytimeObjective] = {
    "equal": AnytimeObjective(lambda p, g: Draw(4), False, equal),
    "growing": AnytimeObjective(lambda p, g: Draw(4), False, growing),
    "growing-distill": AnytimeObjective(lambda p, g: Draw(4), False, growing_distill),
    "curriculum": AnytimeObjective(lambda p, g: Draw(2 + min(4, int(5 * p))), False, growing),
    "random-depth": AnytimeObjective(lambda p, g: Draw(_uniform(1, 6, g)), False, growing),
    "depth": AnytimeObjective(lambda p, g: Draw(5), True, last_plus_early),
    "depth-curriculum": AnytimeObjective(
        lambda p, g: Draw(2 + min(3, int(4 * p))), True, last_plus_early
    ),
    # 0..3 iterations without a gradient, then the rest of 4 with one; the last exit only.
    "progressive": AnytimeObjective(lambda p, g: Draw(4, _uniform(0, 3, g)), False, last),
    # Deep-equilibrium training: 6 iterations, a gradient through the last only, the answer
    # at the reached state only, Jacobian penalty weight 0.6.
    "fixed-point-jr": AnytimeObjective(lambda p, g: Draw(6), False, last, jacobian=0.6),
}


def anytime_loss(
    name: str,
    net: DynaLayNet,
    x: Tensor,
    y: Tensor,
    progress: float,
    generator: torch.Generator,
    smoothing: float,
) -> tuple[Tensor, list[Tensor], Draw]:
    """(loss, the scored exits, the draw) of objective `name` on one batch."""
    if name not in OBJECTIVES:
        raise KeyError(f"unknown anytime objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    objective = OBJECTIVES[name]
    draw = objective.draw(progress, generator)
    if objective.jacobian is not None:
        logits, z, fz = fixed_point_logits(ModuleParts(net), x, draw.iterations)
        loss = objective.loss([logits], y, smoothing)
        if objective.jacobian:
            loss = loss + objective.jacobian * jacobian_penalty(fz, z, generator)
        return loss, [logits], draw
    exits = anytime_logits(
        ModuleParts(net), x, draw.iterations, objective.detach_early, draw.frozen
    )
    return objective.loss(exits, y, smoothing), exits, draw
