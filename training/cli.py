"""Command line: `python -m training COMMAND ...` (see __main__ for examples).

Every command is a module with `add_arguments(parser)` and `run(args) -> int`, registered in
COMMANDS; `python -m training COMMAND --help` lists its flags.
"""

from __future__ import annotations

import argparse
import importlib

# name → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("training.fit_command", "train a model (three phases) into a checkpoint"),
    "evaluate": ("training.evaluate_command", "evaluate a checkpoint, write metrics.json"),
    "report": ("training.report", "figures + JSON from checkpoints / run dirs"),
    "export-onnx": ("training.export_onnx", "export the checkpoint's parts to ONNX (verified)"),
    "loop-study": ("training.loop_study", "compare loop designs: forced, oracle, gate, iterations"),
    "experiment": (
        "training.experiments.command",
        "run a chapter-4 experiment into reports/ (or `page`)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
