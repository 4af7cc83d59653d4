"""`python -m training fit`: the command line of training.fit.

fit's flags are generated from the config dataclasses (one flag per field, e.g. --lr,
--batch-size, --backbone-epochs, --beta, --no-flip), applied in this order:
preset (--preset, default thesis) → --config FILE (JSON) → --dry-run → explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

from training.config import RENAMED_KEYS, SECTIONS, TrainConfig, load_config_file, merge
from training.recipes import preset, recipe, recipe_names

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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument(
        "--run-dir", type=Path, help="resumable state + history (default runs/<out>-seed<seed>)"
    )
    p.add_argument("--preset", default="thesis", choices=recipe_names())
    p.add_argument("--config", type=Path, help="JSON file with any subset of the config")
    p.add_argument(
        "--epochs", help="N (total, split like the preset) or B,A,J (backbone, agent, joint)"
    )
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
            _add_field(p, f"{section}.{f}", [f, *_old_names(section, f)], typ, seen)
    for f, typ in _fields(TrainConfig):
        if f in _TOP_LEVEL:
            _add_field(p, f, [f], typ, seen)


def run(args: argparse.Namespace) -> int:
    from training.fit import fit

    cfg = resolve_fit_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    fit(cfg, args.out, args.run_dir, quiet=args.quiet, fresh=args.fresh)
    return 0


def _fields(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _old_names(section: str, name: str) -> list[str]:
    """The field's names before a rename: their flags still work, like their JSON keys."""
    return [old for old, new in RENAMED_KEYS.get(section, {}).items() if new == name]


def _add_field(p, dest: str, names: list[str], typ: Any, seen: set[str]) -> None:
    flags = ["--" + name.replace("_", "-") for name in names]
    assert not seen & set(flags), f"duplicate flag in {flags}"
    seen.update(flags)
    base, optional = _unwrap(typ)
    if base is dict:
        return
    kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS}
    if base is bool:
        p.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
    else:
        p.add_argument(*flags, type=_parser(base, optional), metavar=base.__name__.upper(), **kw)


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
    tiny = {k: v for k, v in recipe("tiny").items() if k != "name"}
    cfg = merge(cfg, tiny)
    if data_dir and dataset != "synthetic":
        return merge(cfg, {"data": {"dataset": dataset, "train_subset": 256, "test_subset": 128}})
    classes = 100 if dataset == "cifar100" else 10
    flags.get("data", {}).pop("dataset", None)
    return merge(cfg, {"data": {"synthetic_classes": classes}})


def _epochs(text: str, cfg: TrainConfig) -> dict[str, int]:
    parts = [int(v) for v in text.split(",")]
    if len(parts) == 3:
        return dict(zip(("backbone_epochs", "agent_epochs", "joint_epochs"), parts, strict=True))
    if len(parts) != 1:
        raise SystemExit("--epochs takes N or B,A,J")
    p, total = cfg.phases, parts[0]
    share = [p.backbone_epochs, p.agent_epochs, p.joint_epochs]
    scaled = [max(1, round(total * s / max(sum(share), 1))) for s in share]
    scaled[0] = max(1, total - scaled[1] - scaled[2])
    return dict(zip(("backbone_epochs", "agent_epochs", "joint_epochs"), scaled, strict=True))


def _parse_kv(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--model expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string such as phantom
