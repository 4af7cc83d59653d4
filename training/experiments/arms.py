"""The models an experiment compares ("arms"), all built from the same backbone and config.

- plain: the 3-layer model, straight pass only, no agent (Fig 4.4's Model 0).
- loop_all: every input loops L3∘L2∘L1 to a fixed point, no agent (DEQ-style; Model 3).
- deq_solver: loop_all solved by torchdeq (Anderson/Broyden, implicit backward).
- model_1, model_2: loop_l1 / loop_l1_l2 forced in training and test (Models 1, 2).
- dynalay: the three-phase agent training of training.fit (the config's estimator).
- dynalay_all_actions: the same with the exact all-actions policy gradient.
The confidence gate and the per-sample oracle need no training of their own: they are read off
the DynaLay backbone (training.evaluation.metrics), so they share its data, budget and evaluation.

Same budget: a forced arm trains the backbone for as many epochs as DynaLay's backbone does
(phases backbone + joint), with the same optimiser, schedule, augmentation and seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from model.actions import ACTIONS
from training.config import TrainConfig, merge
from training.experiments import deq_solver
from training.experiments.forced import forced_step
from training.experiments.timing import StepFn
from training.trainer.phases import backbone_training_epochs

NEVER = 10**9  # eval_every for forced arms: their per-epoch agent-path evaluation means nothing


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    action: int | None  # forced in training and test; None: the agent decides
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides

    def config(self, cfg: TrainConfig) -> TrainConfig:
        """This arm's training config derived from the experiment's shared one."""
        cfg = merge(cfg, self.train) if self.train else cfg
        cfg = merge(cfg, {"model": self.model}) if self.model else cfg
        if self.action is None:
            return cfg
        phases = {"backbone_epochs": backbone_training_epochs(cfg.phases), "agent_epochs": 0}
        return merge(cfg, {"phases": {**phases, "joint_epochs": 0}, "eval_every": NEVER})

    def step_overrides(self) -> dict[str, StepFn]:
        return {} if self.action is None else {"backbone": forced_step(self.action)}


def forced(action: int, name: str | None = None, label: str | None = None) -> Arm:
    default = f"Model {action}: {ACTIONS[action]} in training and test"
    return Arm(name or f"model_{action}", label or default, action)


def dynalay() -> Arm:
    return Arm("dynalay", "DynaLay (agent)", None)


def dynalay_all_actions() -> Arm:
    label = "DynaLay (agent, all-actions gradient)"
    return Arm("dynalay_all_actions", label, None, train={"agent": {"estimator": "all_actions"}})


def plain() -> Arm:
    return forced(0, "plain", "3-layer model (straight only, no agent)")


def loop_all() -> Arm:
    return forced(3, "loop_all", "always loop_all (fixed-point iteration, no agent)")


def deq_with_solver(solver: str = "anderson") -> Arm:
    model, label = deq_solver.model_overrides(solver)
    return dataclasses.replace(forced(3, "deq_solver", f"DEQ with solvers ({label})"), model=model)


def by_name(name: str, params: dict[str, Any]) -> Arm:
    builders = {
        "plain": plain,
        "loop_all": loop_all,
        "dynalay": dynalay,
        "dynalay_all_actions": dynalay_all_actions,
    }
    if name in builders:
        return builders[name]()
    if name == "deq_solver":
        return deq_with_solver(params.get("deq_solver", "anderson"))
    if name.startswith("model_"):
        return forced(int(name.removeprefix("model_")))
    raise ValueError(f"unknown arm {name!r}")
