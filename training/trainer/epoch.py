"""One epoch of the trainer: batches → phase step → backward → (gradient average) →
optimizer steps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from model.actions import ACTIONS
from training.trainer.distributed import Runtime, average_gradients
from training.trainer.lookahead import Lookahead, LookaheadConfig
from training.trainer.optim import set_lr, stem_to_eval
from training.trainer.phases import trains_agent, trains_backbone
from training.trainer.schedule import lr_factor
from training.trainer.steps import STEPS, StepContext, StepFn


@dataclass
class EpochPlan:
    phase: str
    epoch: int  # 0-based
    total_epochs: int
    n_batches: int
    # Backbone optimiser updates (one per batch of a phase that trains it): before this epoch,
    # and over the whole run, for the lr schedule. Counted apart from the phase *steps* (the
    # step functions of steps.py), which the agent phase runs without updating the backbone.
    backbone_updates: int
    backbone_updates_total: int


def run_epoch(
    ctx: StepContext,
    optimizers: dict[str, torch.optim.Optimizer],
    plan: EpochPlan,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    runtime: Runtime,
    quiet: bool = False,
    steps: dict[str, StepFn] = STEPS,
) -> tuple[dict, int]:
    """Trains one epoch with steps[plan.phase]; returns (epoch log, backbone updates so far)."""
    o = ctx.cfg.optim
    step_fn = steps[plan.phase]
    ctx.net.train()
    if ctx.cfg.phases.freeze_stem:
        stem_to_eval(ctx.net)
    sums: dict[str, float] = defaultdict(float)
    n_actions = ctx.net.n_actions
    greedy_counts = torch.zeros(n_actions, dtype=torch.long)
    n = 0
    bar = tqdm(
        batches,
        total=plan.n_batches,
        desc=f"epoch {plan.epoch + 1}/{plan.total_epochs} {plan.phase}",
        disable=quiet or not runtime.is_main,
        leave=False,
        dynamic_ncols=True,
    )
    updates = plan.backbone_updates
    lr = optimizers["backbone"].param_groups[0]["lr"]
    lookahead = _lookahead(ctx, plan.phase)
    for x, y in bar:
        if trains_backbone(plan.phase):
            lr = o.lr * lr_factor(
                updates, plan.backbone_updates_total, o.schedule, o.ramp_frac, o.final_lr_frac
            )
            set_lr(optimizers["backbone"], lr)
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        with _autocast(ctx.cfg.precision, x.device):
            result = step_fn(ctx, x, y)
        result.loss.backward()
        _apply(ctx, optimizers, plan.phase, runtime)
        if trains_backbone(plan.phase):
            updates += 1
            if lookahead:
                lookahead.after_update(updates, plan.backbone_updates_total)
        for key, value in result.stats.items():
            sums[key] += value
        greedy_counts += torch.bincount(result.greedy.cpu(), minlength=n_actions)
        n += 1
        bar.set_postfix(loss=f"{result.stats['loss']:.3f}", refresh=False)
    if lookahead:
        lookahead.end_epoch()
    log = {key: value / max(n, 1) for key, value in sums.items()}
    log["lr"] = lr
    log["batches"] = n
    total = max(int(greedy_counts.sum()), 1)
    log["greedy_action_frequencies"] = {
        name: int(greedy_counts[a]) / total for a, name in enumerate(ACTIONS[:n_actions])
    }
    sampled = {n: log.pop(f"sampled_{a}") for a, n in enumerate(ACTIONS) if f"sampled_{a}" in log}
    if sampled:
        log["sampled_action_frequencies"] = sampled
    return log, updates


def _autocast(precision: str, device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _lookahead(ctx: StepContext, phase: str) -> Lookahead | None:
    la = ctx.cfg.optim.lookahead
    if la is None or not trains_backbone(phase):
        return None
    return Lookahead(ctx.net.backbone, LookaheadConfig(**la))


def _apply(ctx: StepContext, optimizers, phase: str, runtime: Runtime) -> None:
    net, o = ctx.net, ctx.cfg.optim
    if trains_backbone(phase):
        average_gradients(net.backbone.parameters(), runtime)
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(net.backbone.parameters(), o.grad_clip)
        optimizers["backbone"].step()
    if trains_agent(phase):
        average_gradients(net.agent.parameters(), runtime)
        optimizers["agent"].step()
