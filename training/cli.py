"""Command line: `python -m training COMMAND ...` (see __main__ for examples).

Every command is a module with `add_arguments(parser)` and `run(args) -> int`, registered in
COMMANDS; `python -m training COMMAND --help` lists its flags. Only the named command's module
is imported: the commands' dependencies differ (matplotlib, onnx, the experiments), and a fit
has no reason to load the report's plotting.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command listed and only `command`'s flags (its module imported)."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command argv names: its first word that is not an option (the top level has no
    option taking a value), or None (then argparse reports the missing command)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command_of(argv)).parse_args(argv)
    return args.run(args)
