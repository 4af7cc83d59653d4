"""Command line: `python -m training {fit,evaluate,report} ...` (see __main__ for examples).

fit's flags are generated from the config dataclasses (one flag per field, e.g. --lr,
--batch-size, --warmup-epochs, --beta, --no-flip), applied in this order:
preset (--preset, default thesis) → --config FILE (JSON) → --dry-run → explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from training.config import SECTIONS, TrainConfig, load_config_file, merge
from training.presets import PRESETS, preset

_TOP_LEVEL = (
    "seed",
    "device",
    "threads",
    "channels_last",
    "max_batches",
    "eval_batch_size",
    "eval_every",
    "eval_subset",
    "name",
    "version",
    "init_from",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fit(sub.add_parser("fit", help="train a model (three phases) into a checkpoint"))
    _add_evaluate(sub.add_parser("evaluate", help="evaluate a checkpoint, write metrics.json"))
    _add_report(sub.add_parser("report", help="figures + JSON from checkpoints / run dirs"))
    from training import export_onnx  # onnx itself is imported only when an export runs

    export_onnx.add_arguments(
        sub.add_parser("export-onnx", help="export the checkpoint's parts to ONNX (verified)")
    )
    from training import loop_study

    loop_study.add_arguments(
        sub.add_parser("loop-study", help="compare loop designs: forced, oracle, gate, iterations")
    )
    from training.experiments import command as experiment

    experiment.add_arguments(
        sub.add_parser("experiment", help="run a chapter-4 experiment into reports/ (or `page`)")
    )
    return parser


def _add_fit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument(
        "--run-dir", type=Path, help="resumable state + history (default runs/<out>-seed<seed>)"
    )
    p.add_argument("--preset", default="thesis", choices=sorted(PRESETS))
    p.add_argument("--config", type=Path, help="JSON file with any subset of the config")
    p.add_argument("--epochs", help="N (total, split like the preset) or W,A,J per phase")
    p.add_argument("--width", type=int, help="model width (shortcut for --model width=N)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="ModelConfig override, repeatable (e.g. --model backward=implicit)",
    )
    p.add_argument("--dry-run", action="store_true", help="tiny model, synthetic data, seconds")
    p.add_argument("--fresh", action="store_true", help="ignore saved state in the run dir")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.add_argument("--print-config", action="store_true", help="print the resolved config, exit")
    seen: set[str] = set()
    for section, cls in SECTIONS.items():
        for f, typ in _fields(cls):
            _add_field(p, f"{section}.{f}", f, typ, seen)
    for f, typ in _fields(TrainConfig):
        if f in _TOP_LEVEL:
            _add_field(p, f, f, typ, seen)


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))  # valid: LM
    p.add_argument("--dataset", help="override the dataset recorded in the checkpoint")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument("--output", type=Path, help="also write the JSON here")
    p.add_argument("--no-write", action="store_true", help="leave the checkpoint's metrics.json")
    p.add_argument("--json", action="store_true", help="print the full JSON too")


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", type=Path, nargs="+", help="checkpoint dirs and/or run dirs")
    p.add_argument("--out", type=Path, help="output folder (default reports/<first name>)")


def _fields(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _add_field(p, dest: str, name: str, typ: Any, seen: set[str]) -> None:
    flag = "--" + name.replace("_", "-")
    assert flag not in seen, f"duplicate flag {flag}"
    seen.add(flag)
    base, optional = _unwrap(typ)
    if base is dict:
        return
    kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS}
    if base is bool:
        p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
    else:
        p.add_argument(flag, type=_parser(base, optional), metavar=base.__name__.upper(), **kw)


def _unwrap(typ: Any) -> tuple[type, bool]:
    """int | None → (int, True); int → (int, False)."""
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return args[0], True
    return typing.get_origin(typ) or typ, False


def _parser(base: type, optional: bool):
    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        return base(text)

    parse.__name__ = base.__name__
    return parse


def resolve_fit_config(args: argparse.Namespace) -> TrainConfig:
    cfg = preset(args.preset)
    if args.config:
        cfg = load_config_file(args.config, cfg)
    flags = _flag_overrides(args)
    if args.dry_run:
        cfg = _dry_run(cfg, flags)
    if args.epochs:
        flags.setdefault("phases", {}).update(_epochs(args.epochs, cfg))
    model = dict(_parse_kv(kv) for kv in args.model)
    if args.width:
        model["width"] = args.width
    if model:
        flags["model"] = model
    if "name" not in flags and not (args.config and "name" in json.loads(args.config.read_text())):
        flags["name"] = args.out.name
    return merge(cfg, flags)


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dest, value in vars(args).items():
        section, _, name = dest.partition(".")
        if name and section in SECTIONS:
            out.setdefault(section, {})[name] = value
        elif dest in _TOP_LEVEL:
            out[dest] = value
    return out


def _dry_run(cfg: TrainConfig, flags: dict[str, Any]) -> TrainConfig:
    """Tiny recipe; real data (first few hundred images) only when a data dir is given."""
    data_dir = flags.get("data", {}).get("data_dir", cfg.data.data_dir)
    dataset = flags.get("data", {}).get("dataset", cfg.data.dataset)
    tiny = {k: v for k, v in PRESETS["tiny"].items() if k != "name"}
    cfg = merge(cfg, tiny)
    if data_dir and dataset != "synthetic":
        return merge(cfg, {"data": {"dataset": dataset, "train_subset": 256, "test_subset": 128}})
    classes = 100 if dataset == "cifar100" else 10
    flags.get("data", {}).pop("dataset", None)
    return merge(cfg, {"data": {"synthetic_classes": classes}})


def _epochs(text: str, cfg: TrainConfig) -> dict[str, int]:
    parts = [int(v) for v in text.split(",")]
    if len(parts) == 3:
        return dict(zip(("warmup_epochs", "agent_epochs", "joint_epochs"), parts, strict=True))
    if len(parts) != 1:
        raise SystemExit("--epochs takes N or W,A,J")
    p, total = cfg.phases, parts[0]
    share = [p.warmup_epochs, p.agent_epochs, p.joint_epochs]
    scaled = [max(1, round(total * s / max(sum(share), 1))) for s in share]
    scaled[0] = max(1, total - scaled[1] - scaled[2])
    return dict(zip(("warmup_epochs", "agent_epochs", "joint_epochs"), scaled, strict=True))


def _parse_kv(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--model expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string such as phantom


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fit":
        return _run_fit(args)
    if args.command == "evaluate":
        return _run_evaluate(args)
    if args.command == "export-onnx":
        from training.export_onnx import run

        return run(args)
    if args.command == "loop-study":
        return args.run(args)
    if args.command == "experiment":
        from training.experiments.command import run as run_experiment

        return run_experiment(args)
    return _run_report(args)


def _run_fit(args: argparse.Namespace) -> int:
    from training.fit import fit

    cfg = resolve_fit_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    fit(cfg, args.out, args.run_dir, quiet=args.quiet, fresh=args.fresh)
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from training.evaluate import evaluate_checkpoint, format_summary

    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = evaluate_checkpoint(
        args.checkpoint,
        args.data_dir,
        args.split,
        args.dataset,
        args.batch_size,
        args.limit,
        args.device,
        write=not args.no_write,
        output=args.output,
    )
    print(format_summary(metrics))
    if args.json:
        json.dump(metrics, sys.stdout, indent=2, sort_keys=True)
        print()
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from training.report import write_report

    out = write_report(args.paths, args.out)
    print(f"wrote report to {out}")
    return 0
