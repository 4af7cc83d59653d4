"""One training run's state and its steps: build the session, train an epoch, evaluate.

The public face of the trainer. `training.fit` strings these together into a resumable
run that ends in a checkpoint; the experiments call them as they are, passing their own step
table (`steps`) where they time or force the phase steps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import load_checkpoint
from model.config import ModelConfig
from model.network import DynaLayNet, build_model
from training.config import TrainConfig
from training.data.augment import normalize
from training.data.batches import BatchIterator, Shard
from training.data.fit_data import BatchSource, PreparedData
from training.data.prepare import prepare_data
from training.evaluation.collect import collect
from training.evaluation.metrics import agent_summary, full_metrics
from training.evaluation.reward import cost_normalizer
from training.trainer.distributed import Runtime
from training.trainer.epoch import EpochPlan, run_epoch
from training.trainer.optim import build_optimizers, freeze_stem
from training.trainer.phases import backbone_training_epochs, phase_of
from training.trainer.state import load_state, save_state
from training.trainer.steps import STEPS, StepContext, StepFn, replay_agent


@dataclass
class Session:
    """Everything one fit needs, built once."""

    cfg: TrainConfig
    runtime: Runtime
    data: PreparedData
    net: DynaLayNet
    optimizers: dict[str, torch.optim.Optimizer]
    train_it: BatchSource
    test_it: BatchSource
    n_batches: int
    normalizer: float
    # The fits that trained the --init-from checkpoint (_earlier_fits), read once: the
    # checkpoint's training record lists them, and this run's data epochs continue after them.
    fits_before: tuple[dict[str, Any], ...] = ()

    @property
    def data_epochs_before(self) -> int:
        """Epochs the earlier fits trained. This run's epoch e reads the data of epoch
        data_epochs_before + e: the order, crops and flips are seeded by the data epoch, so a
        later fit restarting at 0 would replay the first fit's very images — and an agent
        fit would then measure its rewards on views the backbone has memorised."""
        return sum(fit.get("epochs", 0) for fit in self.fits_before)


@dataclass
class Progress:
    """What the resumable state records: epochs done, lr-schedule position, history."""

    epoch: int = 0
    backbone_updates: int = 0  # backbone optimiser updates so far (the lr schedule's position)
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def build_net(
    cfg: TrainConfig, n_classes: int, device: torch.device, fields: dict[str, Any] | None = None
) -> DynaLayNet:
    """fields: ModelConfig fields the data fixes (PreparedData.model); cfg.model wins."""
    torch.manual_seed(cfg.seed)
    base = {"arch": "cnn", "n_classes": n_classes, **(fields or {})}
    model_cfg = ModelConfig.from_dict({**base, **cfg.model})
    net = build_model(model_cfg).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def open_session(
    cfg: TrainConfig, runtime: Runtime, run_dir: Path | None = None, fresh: bool = False
) -> Session:
    shard = Shard(runtime.rank, runtime.world)
    data = prepare_data(cfg, runtime.device, shard, run_dir, fresh)
    net = build_net(cfg, len(data.classes), runtime.device, data.model)
    if hasattr(net.backbone, "init_whitening"):
        # From the first training images; a resumed or --init-from run overwrites it.
        net.backbone.init_whitening(_whitening_images(data.train_it))
    if cfg.phases.freeze_stem:
        freeze_stem(net)
    return Session(
        cfg=cfg,
        runtime=runtime,
        data=data,
        net=net,
        optimizers=build_optimizers(net, cfg.optim),
        train_it=data.train_it,
        test_it=data.test_it,
        n_batches=data.train_it.num_batches(cfg.max_batches),
        normalizer=cost_normalizer(cfg.agent, net),
        fits_before=tuple(_earlier_fits(cfg)),
    )


# The training record's list of the fits that made a checkpoint (training.fit writes it), by
# the names it had: checkpoints written before a chained run was called a fit say "stages".
FITS_KEYS = ("fits", "stages")


def _earlier_fits(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The fits that trained the --init-from checkpoint (its own record, then its fits'):
    [{"name", "wall_seconds", "epochs"}, ...]; [] without one."""
    if not cfg.init_from:
        return []
    return recorded_fits(load_checkpoint(cfg.init_from).train)


def recorded_fits(train: dict[str, Any]) -> list[dict[str, Any]]:
    """The fits a checkpoint's training record lists; a record from before the list was
    written is one fit, its own."""
    for key in FITS_KEYS:
        if key in train:
            return list(train[key])
    return [
        {
            "name": "init",
            "wall_seconds": round(train.get("wall_seconds", 0.0), 1),
            "epochs": train.get("epochs", 0),
        }
    ]


def _whitening_images(train_it: BatchIterator, n: int = 5000) -> torch.Tensor:
    """The first n training images, normalised, unaugmented: (n, C, H, W)."""
    images = train_it.split.images[:n].to(train_it.device)
    return normalize(images, train_it.mean, train_it.std)


AGENT_FIELDS = (
    "tta_action",
    "agent_raw_confidence",
    "agent_inputs",
    "agent_hidden",
    "agent_choices",
)


# How a loop is run, not what it computes with: a later stage may loop the same weights with
# another budget or tolerance.
LOOP_FIELDS = ("solver", "tol", "max_iter", "backward", "b_tol", "b_max_iter", "phantom_steps")


def init_weights(net: DynaLayNet, checkpoint: Path) -> None:
    """Copy a checkpoint's weights into `net`. The model configs must agree, except in the
    loop settings (LOOP_FIELDS) and the agent's fields (its action set, inputs, width): then
    the backbone is copied and the agent starts fresh."""
    loaded = load_checkpoint(checkpoint)
    loop_fields = {name: getattr(net.config, name) for name in LOOP_FIELDS}
    loaded_config = replace(loaded.config, **loop_fields)
    agent_fields = {name: getattr(net.config, name) for name in AGENT_FIELDS}
    if replace(loaded_config, **agent_fields) != net.config:
        raise ValueError(
            f"{checkpoint}: its model config differs from this run's; init_from needs the same "
            "architecture"
        )
    if loaded_config == net.config:
        net.load_state_dict(loaded.net.state_dict())
    else:
        net.backbone.load_state_dict(loaded.net.backbone.state_dict())


def resume(s: Session, run_dir: Path) -> Progress:
    info = load_state(run_dir, s.net, s.optimizers)
    # Keys added to the config since the state was saved take their defaults.
    if TrainConfig.from_dict(info["config"]).to_dict() != s.cfg.to_dict():
        raise ValueError(
            f"{run_dir}: holds a run with a different config; pass --fresh to "
            "start over or choose another --run-dir"
        )
    return progress_of(info)


def progress_of(info: dict[str, Any]) -> Progress:
    """The Progress a saved state's info records (save_progress writes it)."""
    # Run states saved before the counter's rename call it backbone_step.
    updates = info.get("backbone_updates", info.get("backbone_step", 0))
    return Progress(info["epoch"], updates, info["seconds"], info["history"])


def train_epoch(
    s: Session,
    epoch: int,
    progress: Progress,
    quiet: bool,
    steps: dict[str, StepFn] | None = None,
) -> dict[str, Any]:
    """Trains one epoch, evaluates if due, appends the record to progress.history.

    steps: the phase → step function table (default training.trainer.steps.STEPS); callers that
    time or force the steps pass their own."""
    cfg = s.cfg
    phase = phase_of(epoch, cfg.phases)
    data_epoch = s.data_epochs_before + epoch
    # Seeded per epoch, so a resumed run samples the same actions as an uninterrupted one.
    gen = torch.Generator(device=s.runtime.device).manual_seed(cfg.seed * 100_003 + data_epoch)
    ctx = StepContext(s.net, cfg, s.normalizer, gen, progress=epoch / cfg.total_epochs)
    total_updates = backbone_training_epochs(cfg.phases) * s.n_batches
    plan = EpochPlan(
        phase, epoch, cfg.total_epochs, s.n_batches, progress.backbone_updates, total_updates
    )
    t0 = time.perf_counter()
    batches = s.train_it.batches(data_epoch, cfg.max_batches)
    # Stats are this rank's batch means (rank 0's are logged under torchrun).
    train_log, progress.backbone_updates = run_epoch(
        ctx, s.optimizers, plan, batches, s.runtime, quiet, steps or STEPS
    )
    if ctx.rewards_seen:
        train_log.update(replay_agent(ctx, s.optimizers["agent"], s.runtime))
    train_log["seconds"] = time.perf_counter() - t0
    record = {"epoch": epoch + 1, "phase": phase, "train": train_log}
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.total_epochs:
        record["test"] = evaluate(s, s.test_it.batches(0, _eval_batches(s)), final=False)
    progress.history.append(record)
    progress.epoch = epoch + 1
    progress.seconds += time.perf_counter() - t0
    return record


def evaluate(s: Session, batches, final: bool) -> dict[str, Any]:
    """Agent summary per epoch; at the end forced actions, oracle and gate too (LM: perplexity
    of the agent's path and of every forced action)."""
    if s.data.task == "lm":
        from training.evaluation.lm_metrics import lm_metrics

        return lm_metrics(s.net, batches, forced=final)
    outcomes = collect(s.net, batches, forced=final)
    a = s.cfg.agent
    if final:
        return full_metrics(outcomes, a.alpha, a.beta, s.normalizer, cost=a.cost)
    return agent_summary(outcomes, a.alpha, a.beta, s.normalizer, a.cost)


def _eval_batches(s: Session) -> int | None:
    """Batches covering cfg.eval_subset test images (None: all); the final evaluation uses all."""
    n = s.cfg.eval_subset
    return None if n is None else max(1, -(-n // s.cfg.eval_batch_size))


def save_progress(s: Session, run_dir: Path, progress: Progress) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "epoch": progress.epoch,
        "backbone_updates": progress.backbone_updates,
        "history": progress.history,
        "seconds": progress.seconds,
        "config": s.cfg.to_dict(),
    }
    save_state(run_dir, s.net, s.optimizers, info)
    _write_json(run_dir / "history.json", progress.history)


def final_metrics(s: Session) -> dict[str, Any]:
    """Full evaluation (forced actions, oracle, gate) on the test split."""
    t0 = time.perf_counter()
    metrics = evaluate(s, s.test_it.batches(0), final=True)
    metrics.update(
        {
            "checkpoint": {"name": s.cfg.name, "version": s.cfg.version},
            "dataset": s.cfg.data.dataset,
            "split": s.data.eval_split,
            "timing": {
                "evaluation_seconds": round(time.perf_counter() - t0, 2),
                "device": str(s.runtime.device),
            },
        }
    )
    return metrics


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
