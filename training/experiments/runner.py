"""Trains one arm with the trainer's public API (training.trainer.session), timed.

Nothing is re-implemented here: the session (data, net, optimizers, batches), the epoch (phase,
seeded action sampling, run_epoch, per-epoch evaluation) and the final evaluation (forced
actions, oracle, gate) are the loop's, as `fit` uses them. Arms only pass their own step table
(timed, and forced for forced arms) and may start from given weights (the β sweep's shared
backbone). No checkpoint or run state is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from model.network import DynaLayNet
from training.config import TrainConfig
from training.experiments.arms import Arm
from training.experiments.context import Context
from training.experiments.timed_inference import (
    InferenceResult,
    Policy,
    agent_policy,
    forced_policy,
    timed_inference,
)
from training.experiments.timing import StepTimer, TrainTiming, timed_training
from training.trainer.session import Progress, Session, final_metrics, open_session, train_epoch


@dataclass
class ArmRun:
    arm: Arm
    cfg: TrainConfig
    session: Session
    history: list[dict[str, Any]]
    metrics: dict[str, Any]  # training.evaluation.metrics.full_metrics on the test split
    timing: TrainTiming

    @property
    def net(self) -> DynaLayNet:
        return self.session.net

    def policy(self) -> Policy:
        return agent_policy if self.arm.action is None else forced_policy(self.arm.action)

    def inference(self, policy: Policy | None = None) -> InferenceResult:
        """Timed pass over the whole test split with this arm's policy (or the one given)."""
        return timed_inference(self.net, self.session.test_it.batches(0), policy or self.policy())

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}


def train_arm(
    ctx: Context,
    arm: Arm,
    cfg: TrainConfig | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
    tag: str = "",
) -> ArmRun:
    cfg = arm.config(cfg or ctx.recipe.train)
    s = open_session(cfg, ctx.runtime, run_dir=None, fresh=True)  # no run state: nothing cached
    if init_state is not None:
        s.net.load_state_dict(init_state)
    timer = StepTimer(ctx.runtime.device)
    progress = Progress()
    name = f"{arm.name}{tag} seed {cfg.seed}"
    with timed_training(timer, s.optimizers, arm.step_overrides()) as steps:
        for epoch in range(cfg.total_epochs):
            record = train_epoch(s, epoch, progress, quiet=ctx.quiet, steps=steps)
            if arm.action is not None:
                # The trainer's evaluation follows the agent, a path a forced model never takes.
                record.pop("test", None)
            ctx.say(f"{name}: {_line(record, cfg.total_epochs)}")
    timer.timing.train_seconds = sum(r["train"]["seconds"] for r in progress.history)
    metrics = final_metrics(s)
    return ArmRun(arm, cfg, s, progress.history, metrics, timer.timing)


def _line(record: dict[str, Any], total: int) -> str:
    t = record["train"]
    text = f"epoch {record['epoch']}/{total} {record['phase']} loss {t['loss']:.4f}"
    text += f" {t['seconds']:.1f}s"
    if "test" in record:
        e = record["test"]
        text += f" | test acc {e['accuracy']:.4f} evals {e['mean_layer_evaluations']:.2f}"
    return text
