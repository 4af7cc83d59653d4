"""`python -m training fit`: the three phases end to end, resumable, ending in a checkpoint.

Files: the checkpoint goes to `out` (model.checkpoint.save_checkpoint, with history.json as an
extra file); the run directory (default runs/<out name>-seed<seed>) holds the resumable state
and history.json after every epoch. Re-running the same command continues where it stopped.
The trainer itself is training.trainer.session's public API.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import save_checkpoint
from training.config import TrainConfig
from training.trainer.distributed import Runtime, barrier, init_runtime, shutdown
from training.trainer.phases import trains_backbone
from training.trainer.session import (
    Progress,
    Session,
    final_metrics,
    init_weights,
    open_session,
    resume,
    save_progress,
    train_epoch,
)
from training.trainer.state import has_state


@dataclass(frozen=True)
class FitResult:
    checkpoint: Path
    run_dir: Path
    history: list[dict[str, Any]]
    metrics: dict[str, Any]


def default_run_dir(out: Path, seed: int) -> Path:
    return Path("runs") / f"{Path(out).name}-seed{seed}"


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


def _fit(cfg, out: Path, run_dir: Path, quiet: bool, fresh: bool, runtime: Runtime) -> FitResult:
    started = time.perf_counter()
    s = open_session(cfg, runtime, run_dir, fresh)
    progress = Progress()
    if has_state(run_dir) and not fresh:
        progress = resume(s, run_dir)
        _say(runtime, quiet, f"resuming {run_dir} at epoch {progress.epoch + 1}")
    elif cfg.init_from:
        init_weights(s.net, Path(cfg.init_from))
        _say(runtime, quiet, f"starting from the weights of {cfg.init_from}")
    for epoch in range(progress.epoch, cfg.total_epochs):
        record = train_epoch(s, epoch, progress, quiet)
        _say(runtime, quiet, _epoch_line(record))
        if runtime.is_main:
            save_progress(s, run_dir, progress)
        barrier(runtime)
    metrics = final_metrics(s)
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
    this_fit = {"name": s.cfg.name, "wall_seconds": round(wall, 1), "epochs": s.cfg.total_epochs}
    fits = [*s.fits_before, this_fit]
    train_record["fits"] = fits
    train_record["total_wall_seconds"] = round(sum(f["wall_seconds"] for f in fits), 1)
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
