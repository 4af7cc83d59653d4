"""`python -m training experiment NAME ...`: argument parsing and one experiment's run.

Kept light to import (`experiment --help` builds its parser from it); the experiments
themselves (and matplotlib) are imported only when one runs.
"""

from __future__ import annotations

import argparse
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from training.experiments.registry import EXPERIMENTS

REPORTS = Path("reports")
DRY_RUN_REPORTS = Path("runs/experiments/dry-run")  # never mixed into the committed reports/


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "name",
        choices=[*EXPERIMENTS, "all", "page"],
        help="an experiment (configs/experiments/NAME.json), all of them, or `page`: "
        "regenerate <out>/README.md from <out>/*/results.json",
    )
    p.add_argument("--data-dir", type=Path, help="folder holding the dataset (e.g. data/)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--reduced", action="store_true", help="the CPU recipe: subsets, few epochs")
    mode.add_argument("--dry-run", action="store_true", help="synthetic data, tiny, seconds")
    p.add_argument(
        "--out", type=Path, help=f"reports root (default {REPORTS}; dry runs {DRY_RUN_REPORTS})"
    )
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the recipe's)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the recipe's)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def run(args: argparse.Namespace) -> int:
    from training.experiments.page import write_page

    mode = "dry_run" if args.dry_run else "reduced" if args.reduced else "full"
    root = args.out or (DRY_RUN_REPORTS if mode == "dry_run" else REPORTS)
    names = EXPERIMENTS if args.name == "all" else () if args.name == "page" else (args.name,)
    overrides = {"data_dir": args.data_dir, "device": args.device, "threads": args.threads}
    for name in names:
        path = run_experiment(name, mode, root, overrides, args.quiet, _command(args, name))
        print(f"wrote {path}")
    print(f"wrote {write_page(root)}")
    return 0


def run_experiment(
    name: str, mode: str, root: Path, overrides: dict[str, Any], quiet: bool, command: str
) -> Path:
    from training.experiments.context import Context
    from training.experiments.output import write_results
    from training.experiments.registry import experiment_module
    from training.experiments.spec import load_recipe
    from training.trainer.distributed import init_runtime, shutdown

    recipe = load_recipe(name, mode, overrides)
    data = recipe.train.data
    if data.dataset != "synthetic" and not data.data_dir:
        raise SystemExit(f"{name}: the {mode} recipe reads {data.dataset}; pass --data-dir DIR")
    out_dir = Path(root) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    runtime = init_runtime(recipe.train.device, recipe.train.threads)
    try:
        ctx = Context(recipe, runtime, out_dir, quiet)
        started, t0 = datetime.now(UTC), time.perf_counter()
        results = experiment_module(name).run(ctx)
        return write_results(ctx, results, command, started, time.perf_counter() - t0)
    finally:
        shutdown(runtime)
        torch.set_num_threads(threads)  # the recipe's thread count is not left behind


def _command(args: argparse.Namespace, name: str) -> str:
    """The command line that reproduces this experiment (one name even under `all`)."""
    argv = ["python", "-m", "training", "experiment", name]
    flags = {"--data-dir": args.data_dir, "--out": args.out, "--device": args.device}
    flags["--threads"] = args.threads
    for flag, value in flags.items():
        if value is not None:
            argv += [flag, str(value)]
    argv += [f for f, on in (("--reduced", args.reduced), ("--dry-run", args.dry_run)) if on]
    return shlex.join(argv)
