"""`python -m training fit`: the three phases end to end, resumable, ending in a checkpoint.

Files: the checkpoint goes to `out` (model.checkpoint.save_checkpoint, with history.json as an
extra file); the run directory (default runs/<out name>-seed<seed>) holds the resumable state
and history.json after every epoch. Re-running the same command continues where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ModelConfig
from model.network import DynaLayNet, build_model
from training.collect import collect
from training.config import TrainConfig
from training.data import ImageSplit, load_split
from training.data.augment import normalize
from training.data.batches import BatchIterator, Shard
from training.data.stats import channel_stats, image_preprocessing
from training.distributed import Runtime, barrier, init_runtime, shutdown
from training.metrics import agent_summary, full_metrics
from training.optim import build_optimizers, freeze_stem
from training.phases import backbone_epochs, phase_of, trains_backbone
from training.prepared import BatchSource, PreparedData
from training.reward import max_layer_evaluations
from training.state import has_state, load_state, save_state
from training.steps import StepContext
from training.text import TEXT_DATASETS
from training.trainer import EpochPlan, run_epoch

TOKENIZER_CACHE = "tokenizer.json"  # in the run dir: a resumed text run keeps its token ids


@dataclass(frozen=True)
class FitResult:
    checkpoint: Path
    run_dir: Path
    history: list[dict[str, Any]]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Data:
    train: ImageSplit
    test: ImageSplit
    mean: list[float]
    std: list[float]


def default_run_dir(out: Path, seed: int) -> Path:
    return Path("runs") / f"{Path(out).name}-seed{seed}"


def load_data(cfg: TrainConfig) -> Data:
    d = cfg.data
    kw = {
        "data_dir": d.data_dir,
        "download": d.download,
        "synthetic_size": d.synthetic_size,
        "n_classes": d.synthetic_classes,
    }
    train = load_split(d.dataset, "train", **kw)
    test = load_split(d.dataset, "test", **kw)
    if d.train_subset:
        train = train.subset(d.train_subset)
    if d.test_subset:
        test = test.subset(d.test_subset)
    mean, std = channel_stats(train)
    return Data(train, test, mean, std)


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


def cost_normalizer(cfg: TrainConfig, net: DynaLayNet) -> float:
    return cfg.agent.cost_normalizer or float(max_layer_evaluations(net.config.max_iter))


def _start_tokenizer(cfg: TrainConfig) -> Path | None:
    """The --init-from checkpoint's tokenizer file, if it has one."""
    if not cfg.init_from:
        return None
    pre = load_checkpoint(cfg.init_from).preprocessing
    return Path(cfg.init_from) / pre["tokenizer"] if pre.get("tokenizer") else None


def prepare_data(
    cfg: TrainConfig, runtime: Runtime, run_dir: Path | None = None, fresh: bool = False
) -> PreparedData:
    """The dataset's batches and checkpoint metadata: images here, text in training/text/."""
    if cfg.data.dataset in TEXT_DATASETS:
        from training.text.prepare import prepare_text

        cache = run_dir / TOKENIZER_CACHE if run_dir else None
        shard = Shard(runtime.rank, runtime.world)
        start = _start_tokenizer(cfg)
        return prepare_text(cfg, runtime.device, shard, cache, fresh, start)
    data = load_data(cfg)
    return PreparedData(
        train_it=make_batches(cfg, data.train, data, runtime, train=True),
        test_it=make_batches(cfg, data.test, data, runtime, train=False),
        classes=data.train.classes,
        model={"arch": "cnn"},
        preprocessing=image_preprocessing(data.mean, data.std, cfg.model.get("image_size", 32)),
    )


def make_batches(cfg: TrainConfig, split: ImageSplit, data: Data, runtime: Runtime, train: bool):
    return BatchIterator(
        split=split,
        batch_size=cfg.optim.batch_size if train else cfg.eval_batch_size,
        mean=torch.tensor(data.mean, device=runtime.device),
        std=torch.tensor(data.std, device=runtime.device),
        device=runtime.device,
        train=train,
        pad=cfg.data.pad,
        flip=cfg.data.flip,
        seed=cfg.seed,
        # Evaluation runs the full split on every rank: no collectives, identical numbers.
        shard=Shard(runtime.rank, runtime.world) if train else Shard(),
        channels_last=cfg.channels_last,
        flip_mode=cfg.data.flip_mode,
    )


def fit(
    cfg: TrainConfig,
    out: Path,
    run_dir: Path | None = None,
    quiet: bool = False,
    fresh: bool = False,
) -> FitResult:
    runtime = init_runtime(cfg.device, cfg.threads)
    try:
        return _fit(
            cfg, Path(out), Path(run_dir or default_run_dir(out, cfg.seed)), quiet, fresh, runtime
        )
    finally:
        shutdown(runtime)


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


@dataclass
class Progress:
    """What the resumable state records: epochs done, lr-schedule position, history."""

    epoch: int = 0
    backbone_step: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def _fit(cfg, out: Path, run_dir: Path, quiet: bool, fresh: bool, runtime: Runtime) -> FitResult:
    started = time.perf_counter()
    s = _session(cfg, runtime, run_dir, fresh)
    progress = Progress()
    if has_state(run_dir) and not fresh:
        progress = _resume(s, run_dir)
        _say(runtime, quiet, f"resuming {run_dir} at epoch {progress.epoch + 1}")
    elif cfg.init_from:
        _init_weights(s.net, Path(cfg.init_from))
        _say(runtime, quiet, f"starting from the weights of {cfg.init_from}")
    for epoch in range(progress.epoch, cfg.total_epochs):
        record = _train_epoch(s, epoch, progress, quiet)
        _say(runtime, quiet, _epoch_line(record))
        if runtime.is_main:
            _save_progress(s, run_dir, progress)
        barrier(runtime)
    metrics = _final_metrics(s)
    if runtime.is_main:
        _write_checkpoint(s, out, metrics, progress, time.perf_counter() - started)
        _say(
            runtime,
            quiet,
            f"wrote {out} — test accuracy {metrics['accuracy']:.4f}, "
            f"{metrics['mean_layer_evaluations']:.2f} layer evaluations/sample"
            + (f", perplexity {metrics['perplexity']:.2f}" if "perplexity" in metrics else ""),
        )
    barrier(runtime)
    return FitResult(out, run_dir, progress.history, metrics)


def _session(
    cfg: TrainConfig, runtime: Runtime, run_dir: Path | None = None, fresh: bool = False
) -> Session:
    data = prepare_data(cfg, runtime, run_dir, fresh)
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
        normalizer=cost_normalizer(cfg, net),
    )


def _whitening_images(train_it: BatchIterator, n: int = 5000) -> torch.Tensor:
    """The first n training images, normalised, unaugmented: (n, C, H, W)."""
    images = train_it.split.images[:n].to(train_it.device)
    return normalize(images, train_it.mean, train_it.std)


def _init_weights(net: DynaLayNet, checkpoint: Path) -> None:
    """Copy a checkpoint's weights into `net`; the model configs must agree."""
    loaded = load_checkpoint(checkpoint)
    if loaded.config != net.config:
        raise ValueError(
            f"{checkpoint}: its model config differs from this run's; init_from needs the same "
            "architecture"
        )
    net.load_state_dict(loaded.net.state_dict())


def _resume(s: Session, run_dir: Path) -> Progress:
    info = load_state(run_dir, s.net, s.optimizers)
    # Keys added to the config since the state was saved take their defaults.
    if TrainConfig.from_dict(info["config"]).to_dict() != s.cfg.to_dict():
        raise ValueError(
            f"{run_dir}: holds a run with a different config; pass --fresh to "
            "start over or choose another --run-dir"
        )
    return Progress(info["epoch"], info["backbone_step"], info["seconds"], info["history"])


def _train_epoch(s: Session, epoch: int, progress: Progress, quiet: bool) -> dict[str, Any]:
    """Trains one epoch, evaluates if due, appends the record to progress.history."""
    cfg = s.cfg
    phase = phase_of(epoch, cfg.phases)
    # Seeded per epoch, so a resumed run samples the same actions as an uninterrupted one.
    gen = torch.Generator(device=s.runtime.device).manual_seed(cfg.seed * 100_003 + epoch)
    ctx = StepContext(s.net, cfg, s.normalizer, gen)
    backbone_total = backbone_epochs(cfg.phases) * s.n_batches
    plan = EpochPlan(
        phase, epoch, cfg.total_epochs, s.n_batches, progress.backbone_step, backbone_total
    )
    t0 = time.perf_counter()
    batches = s.train_it.batches(epoch, cfg.max_batches)
    # Stats are this rank's batch means (rank 0's are logged under torchrun).
    train_log, progress.backbone_step = run_epoch(
        ctx, s.optimizers, plan, batches, s.runtime, quiet
    )
    train_log["seconds"] = time.perf_counter() - t0
    record = {"epoch": epoch + 1, "phase": phase, "train": train_log}
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.total_epochs:
        record["test"] = _evaluate(s, s.test_it.batches(0, _eval_batches(s)), final=False)
    progress.history.append(record)
    progress.epoch = epoch + 1
    progress.seconds += time.perf_counter() - t0
    return record


def _evaluate(s: Session, batches, final: bool) -> dict[str, Any]:
    """Agent summary per epoch; at the end forced actions, oracle and gate too (LM: perplexity
    of the agent's path and of every forced action)."""
    if s.data.task == "lm":
        from training.text.lm_metrics import lm_metrics

        return lm_metrics(s.net, batches, forced=final)
    outcomes = collect(s.net, batches, forced=final)
    a = s.cfg.agent
    if final:
        return full_metrics(outcomes, a.alpha, a.beta, s.normalizer)
    return agent_summary(outcomes, a.alpha, a.beta, s.normalizer)


def _eval_batches(s: Session) -> int | None:
    """Batches covering cfg.eval_subset test images (None: all); the final evaluation uses all."""
    n = s.cfg.eval_subset
    return None if n is None else max(1, -(-n // s.cfg.eval_batch_size))


def _save_progress(s: Session, run_dir: Path, progress: Progress) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "epoch": progress.epoch,
        "backbone_step": progress.backbone_step,
        "history": progress.history,
        "seconds": progress.seconds,
        "config": s.cfg.to_dict(),
    }
    save_state(run_dir, s.net, s.optimizers, info)
    _write_json(run_dir / "history.json", progress.history)


def _final_metrics(s: Session) -> dict[str, Any]:
    """Full evaluation (forced actions, oracle, gate) on the test split."""
    t0 = time.perf_counter()
    metrics = _evaluate(s, s.test_it.batches(0), final=True)
    metrics.update(
        {
            "checkpoint": {"name": s.cfg.name, "version": s.cfg.version},
            "dataset": s.cfg.data.dataset,
            "split": "test",
            "timing": {
                "evaluation_seconds": round(time.perf_counter() - t0, 2),
                "device": str(s.runtime.device),
            },
        }
    )
    return metrics


def _write_checkpoint(
    s: Session, out: Path, metrics: dict[str, Any], progress: Progress, wall: float
) -> None:
    train_record = {
        "config": s.cfg.to_dict(),
        "epochs": s.cfg.total_epochs,
        "train_seconds": progress.seconds,
        "wall_seconds": wall,
        "device": str(s.runtime.device),
        "world_size": s.runtime.world,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    this_stage = {"name": s.cfg.name, "wall_seconds": round(wall, 1), "epochs": s.cfg.total_epochs}
    stages = [*_earlier_stages(s.cfg), this_stage]
    train_record["stages"] = stages
    train_record["total_wall_seconds"] = round(sum(st["wall_seconds"] for st in stages), 1)
    history = (json.dumps(progress.history, indent=1) + "\n").encode()
    save_checkpoint(
        out,
        s.net,
        name=s.cfg.name,
        version=s.cfg.version,
        classes=s.data.classes,
        preprocessing=s.data.preprocessing,
        metrics=metrics,
        train=train_record,
        extra_files={"history.json": history, **s.data.extra_files},
    )


def _earlier_stages(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The stages that trained the --init-from checkpoint (its own record, then its stages')."""
    if not cfg.init_from:
        return []
    train = load_checkpoint(cfg.init_from).train
    if "stages" in train:
        return list(train["stages"])
    return [{"name": "init", "wall_seconds": round(train.get("wall_seconds", 0.0), 1)}]


def _epoch_line(r: dict) -> str:
    t = r["train"]
    parts = [f"epoch {r['epoch']:3d} {r['phase']:8s} loss {t['loss']:.4f}", f"{t['seconds']:.0f}s"]
    if trains_backbone(r["phase"]) and "accuracy_straight" in t:
        parts.append(f"train acc straight {t['accuracy_straight']:.3f}")
    if "reward" in t:
        parts.append(f"reward {t['reward']:.3f}")
    if "test" in r:
        e = r["test"]
        freq = " ".join(f"{v:.2f}" for v in e["action_frequencies"].values())
        parts.append(
            f"test acc {e['accuracy']:.4f} (straight {e['straight_accuracy']:.4f}) "
            f"evals {e['mean_layer_evaluations']:.2f} actions [{freq}]"
        )
        if "perplexity" in e:
            parts.append(f"ppl {e['perplexity']:.2f} (straight {e['straight_perplexity']:.2f})")
    return " | ".join(parts)


def _say(runtime: Runtime, quiet: bool, text: str) -> None:
    if runtime.is_main and not quiet:
        print(text, flush=True)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
