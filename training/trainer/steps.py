"""One training step per phase: losses and per-batch statistics (no optimizer calls here).

Shapes: x (B, 3, H, W) normalised or token ids (B, T) (0 = padding, lengths follow from it),
y (B,) long; logits (B, C); agent_logits (B, 4). Language models: y and logits per token,
(B, T) and (B, T, V) — training/trainer/objective.py handles both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from model.actions import N_LOOP_ACTIONS
from model.network import DynaLayNet, ForwardOutput, StraightPass
from training.config import TrainConfig
from training.evaluation.reward import reward
from training.trainer.anytime import anytime_loss
from training.trainer.distributed import Runtime, average_gradients
from training.trainer.objective import cross_entropy, sample_scores
from training.trainer.policy import (
    PolicyLoss,
    expected_reward_loss,
    greedy_actions,
    policy_loss,
    sample_actions,
)


@dataclass(frozen=True)
class StepContext:
    net: DynaLayNet
    cfg: TrainConfig
    cost_normalizer: float  # layer evaluations that count as cost 1 in the reward
    generator: torch.Generator  # action sampling
    progress: float = 0.0  # share of the run's epochs done when this epoch started
    # (profile (B, P), rewards (B, n_actions)) of each all_actions step, for AgentConfig's
    # replay_epochs; collected only when the agent phase replays.
    rewards_seen: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


@dataclass(frozen=True)
class StepResult:
    loss: torch.Tensor  # scalar to backpropagate
    stats: dict[str, float]  # batch means, for the epoch log
    greedy: torch.Tensor  # (B,) the agent's greedy choice (logged as action frequencies)


def backbone_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """Phase 1: the straight pass and a random looped action, so every mode learns.

    Loss = w_s·CE(straight) + w_l·CE(looped). A low w_s lets the looped modes become a stronger
    function than one pass (measured: at equal weights the loops become the same function as
    the straight pass; docs/recipes.md), which is what gives the agent something to choose.
    """
    p = ctx.cfg.phases
    if p.anytime:
        return _anytime_step(ctx, x, y)
    straight = ctx.net.straight(x)
    if p.loop_weight == 0:
        return _straight_only_step(ctx, straight, y)
    actions = _random_loop_actions(y.shape[0], p.loop_actions, ctx.generator, y.device)
    out = ctx.net.recompute(straight, actions)
    ce_straight = _ce(ctx, straight.logits, y)
    ce_loop = loop_loss(ctx, x, straight.logits, out.logits, y)
    loss = p.straight_weight * ce_straight + p.loop_weight * ce_loop
    stats = {
        "loss": loss.item(),
        "ce_straight": ce_straight.item(),
        "ce_loop": ce_loop.item(),
        "accuracy_straight": _acc(straight.logits, y),
        "accuracy_loop": _acc(out.logits, y),
        "iterations_loop": out.iterations.float().mean().item(),
        "layer_evaluations": out.layer_evaluations.float().mean().item(),
    }
    return StepResult(loss, stats, greedy_actions(out.agent_logits.detach()))


def loop_loss(ctx: StepContext, x, straight_logits, loop_logits, y) -> torch.Tensor:
    """The looped outputs' loss: plain CE, or weighted towards hard samples / a teacher."""
    p, eps = ctx.cfg.phases, ctx.cfg.optim.label_smoothing
    if p.loop_focus == 0 and p.loop_teacher == "none":
        return _ce(ctx, loop_logits, y)
    n_classes = loop_logits.shape[1]
    target = F.one_hot(y, n_classes).float() * (1 - eps) + eps / n_classes  # (B, C)
    with torch.no_grad():
        if p.loop_teacher == "flip":
            mirrored = ctx.net.straight(x.flip(3)).logits
            teacher = (0.5 * (straight_logits + mirrored)).softmax(1)
            target = (1 - p.loop_teacher_weight) * target + p.loop_teacher_weight * teacher
        weight = torch.ones_like(y, dtype=loop_logits.dtype)
        if p.loop_focus:
            p_true = straight_logits.softmax(1).gather(1, y[:, None])[:, 0]
            weight = (1 - p_true).pow(p.loop_focus)
            weight = weight / weight.mean().clamp_min(1e-6)
    per_sample = -(target * loop_logits.log_softmax(1)).sum(1)  # (B,)
    return (weight * per_sample).mean()


def _anytime_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """Phase 1 as an anytime network: loop_all's exits after each iteration, weighed by the
    objective PhaseConfig.anytime names (training/trainer/anytime.py)."""
    smoothing = ctx.cfg.optim.label_smoothing
    name = ctx.cfg.phases.anytime
    loss, exits, draw = anytime_loss(name, ctx.net, x, y, ctx.progress, ctx.generator, smoothing)
    stats = {
        "loss": loss.item(),
        "accuracy_last": _acc(exits[-1], y),
        "iterations_loop": float(draw.iterations),
    }
    if not draw.frozen:
        stats["accuracy_straight"] = _acc(exits[0], y)
    greedy = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    return StepResult(loss, stats, greedy)


def _straight_only_step(ctx: StepContext, straight: StraightPass, y: torch.Tensor) -> StepResult:
    """Phase 1 with loop_weight 0: the plain network (no loop runs, so it costs one pass)."""
    ce = _ce(ctx, straight.logits, y)
    loss = ctx.cfg.phases.straight_weight * ce
    stats = {"loss": loss.item(), "ce_straight": ce.item()}
    stats["accuracy_straight"] = _acc(straight.logits, y)
    greedy = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    return StepResult(loss, stats, greedy)


def agent_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """Phase 2: backbone frozen (no graph through it), agent trained by REINFORCE."""
    with torch.no_grad():
        straight = ctx.net.straight(x)
    agent_logits = ctx.net.agent(straight.profile)  # profile is detached by the model
    pg, sampled, greedy, out_s, r_s = _policy_terms(ctx, straight, agent_logits, y, grad=False)
    stats = {
        "loss": pg.loss.item(),
        "accuracy": _acc(out_s.logits, y),
        **_policy_stats(pg, sampled, r_s, out_s),
    }
    return StepResult(pg.loss, stats, greedy)


def joint_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """Phase 3: total loss = CE − γ·R, realised as CE on the sampled action's output (backbone)
    plus the REINFORCE term (agent only: its input is detached, so it cannot move the backbone).
    """
    p = ctx.cfg.phases
    straight = ctx.net.straight(x)
    agent_logits = ctx.net.agent(straight.profile)
    pg, sampled, greedy, out_s, r_s = _policy_terms(ctx, straight, agent_logits, y, grad=True)
    ce_straight = _ce(ctx, straight.logits, y)
    ce = _ce(ctx, out_s.logits, y)
    loss = p.loop_weight * ce + p.straight_weight * ce_straight + pg.loss
    stats = {
        "loss": loss.item(),
        "ce": ce.item(),
        "ce_straight": ce_straight.item(),
        "accuracy": _acc(out_s.logits, y),
        "accuracy_straight": _acc(straight.logits, y),
        **_policy_stats(pg, sampled, r_s, out_s),
    }
    return StepResult(loss, stats, greedy)


StepFn = Callable[[StepContext, torch.Tensor, torch.Tensor], StepResult]

# phase → step; run_epoch takes this table (or a caller's own, e.g. timed or forced steps).
STEPS: dict[str, StepFn] = {"backbone": backbone_step, "agent": agent_step, "joint": joint_step}


def _policy_terms(ctx, straight: StraightPass, agent_logits, y, grad: bool):
    """Samples actions (the backbone trains on their outputs), measures their reward, and builds
    the agent's loss with the configured estimator."""
    a = ctx.cfg.agent
    sampled = sample_actions(agent_logits, a.prob_floor, ctx.generator)
    greedy = greedy_actions(agent_logits.detach())
    with torch.set_grad_enabled(grad):
        out_s = ctx.net.recompute(straight, sampled, agent_logits.detach())
    r_s = _reward(ctx, out_s, y)
    pg = ESTIMATORS[a.estimator](ctx, straight, agent_logits, y, sampled, greedy, r_s)
    return pg, sampled, greedy, out_s, r_s


def _self_critical(ctx, straight, agent_logits, y, sampled, greedy, r_s) -> PolicyLoss:
    """REINFORCE on the sampled action with the greedy action's reward as baseline."""
    a = ctx.cfg.agent
    with torch.no_grad():
        # Where greedy equals sampled the advantage is 0, so only the differing samples are
        # recomputed (the rest run as straight: free).
        differ = greedy != sampled
        out_g = ctx.net.recompute(straight, torch.where(differ, greedy, 0), agent_logits.detach())
        r_g = torch.where(differ, _reward(ctx, out_g, y, greedy), r_s)
    return policy_loss(agent_logits, sampled, r_s - r_g, a.gamma, a.entropy, a.prob_floor)


def _all_actions(ctx, straight, agent_logits, y, sampled, greedy, r_s) -> PolicyLoss:
    """Exact gradient of E_p[R] from every action's measured reward, (B, n_actions). Only the
    agent's choices run; an action it may not choose has probability 0, so its column just
    repeats straight's reward (never above a real action's, so `best_gain` stays honest)."""
    a = ctx.cfg.agent
    rewards = torch.empty(y.shape[0], ctx.net.n_actions, device=r_s.device)
    with torch.no_grad():
        for action in ctx.net.agent_choices:
            mine = sampled == action  # already measured: run those samples as straight (free)
            acts = torch.where(mine, 0, action)
            out = ctx.net.recompute(straight, acts, agent_logits.detach())
            full = torch.full_like(sampled, action)
            rewards[:, action] = torch.where(mine, r_s.detach(), _reward(ctx, out, y, full))
        barred = [i for i in range(ctx.net.n_actions) if i not in ctx.net.agent_choices]
        rewards[:, barred] = rewards[:, :1]
    if a.replay_epochs:
        ctx.rewards_seen.append((straight.profile.detach().float(), rewards))  # replayed in fp32
    return expected_reward_loss(agent_logits, rewards, a.gamma, a.entropy)


def replay_agent(
    ctx: StepContext, optimizer: torch.optim.Optimizer, runtime: Runtime
) -> dict[str, float]:
    """AgentConfig.replay_epochs more epochs of the agent over ctx.rewards_seen (one step per
    cached batch, same loss as the all_actions step); empties the cache."""
    a = ctx.cfg.agent
    seen, ctx.rewards_seen[:] = list(ctx.rewards_seen), []
    gain = torch.zeros(())
    for _ in range(a.replay_epochs):
        for profile, rewards in seen:
            optimizer.zero_grad(set_to_none=True)
            pg = expected_reward_loss(ctx.net.agent(profile), rewards, a.gamma, a.entropy)
            pg.loss.backward()
            average_gradients(ctx.net.agent.parameters(), runtime)
            optimizer.step()
            gain = pg.advantage
    return {"replay_steps": a.replay_epochs * len(seen), "replay_best_gain": float(gain)}


ESTIMATORS = {"self_critical": _self_critical, "all_actions": _all_actions}


def _reward(ctx, out: ForwardOutput, y, actions=None) -> torch.Tensor:
    a = ctx.cfg.agent
    correct = sample_scores(out.logits, y)  # (B,) 1/0, or a sequence's next-token accuracy
    acts = out.actions if actions is None else actions
    spent = out.macs if a.cost == "macs" else out.layer_evaluations
    return reward(correct, acts, spent, a.alpha, a.beta, ctx.cost_normalizer, a.cost)


def _policy_stats(pg, sampled, r_s, out_s: ForwardOutput) -> dict[str, float]:
    n_actions = out_s.agent_logits.shape[1]
    freq = torch.bincount(sampled, minlength=n_actions).float() / sampled.numel()
    return {
        "reward": r_s.mean().item(),
        "advantage": pg.advantage.item(),
        "entropy": pg.entropy.item(),
        "layer_evaluations": out_s.layer_evaluations.float().mean().item(),
        **{f"sampled_{i}": freq[i].item() for i in range(n_actions)},
    }


def _random_loop_actions(b: int, mode: str, gen: torch.Generator, device) -> torch.Tensor:
    """Looped actions 1..3: one per sample, or one shared by the batch (cheaper grouping)."""
    n = b if mode == "sample" else 1
    acts = torch.randint(1, N_LOOP_ACTIONS, (n,), generator=gen, device=gen.device).to(device)
    return acts.expand(b).contiguous()


def _ce(ctx: StepContext, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return cross_entropy(logits, y, ctx.cfg.optim.label_smoothing)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return sample_scores(logits, y).mean().item()
