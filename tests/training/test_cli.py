"""`python -m training`: --help lists every command, and a command imports only its own modules
(a fit never loads matplotlib, the report's or the experiments' code)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from training.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
# What a fit must not import: plotting, and the modules of the other commands.
NOT_FOR_FIT = ("matplotlib", *(module for name, (module, _) in COMMANDS.items() if name != "fit"))


def _run_training(argv: list[str], cwd: Path) -> tuple[str, set[str]]:
    """Runs `python -X importtime -m training ARGV`; returns (stdout, modules imported)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "training", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # seconds in CI; minutes on a 2-core box shared with a training run
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # importtime writes "import time: self | cumulative | dotted.name" per module to stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # the first is the header
    return done.stdout, modules


def _imported(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def test_help_lists_all_six_commands_with_their_one_line_help():
    text = build_parser().format_help()
    assert len(COMMANDS) == 6
    for name, (_, help_text) in COMMANDS.items():
        assert name in text and help_text in text


def test_help_imports_no_command(tmp_path):
    out, modules = _run_training(["--help"], tmp_path)
    assert all(name in out for name in COMMANDS)
    assert not [m for _, (m, _) in COMMANDS.items() if _imported(modules, m)]
    assert not _imported(modules, "torch")


def test_fit_dry_run_imports_only_the_fit(tmp_path):
    argv = ["fit", "--dry-run", "--epochs", "1,0,0", "--max-batches", "1", "--quiet"]
    argv += ["--synthetic-size", "32"]  # one batch to train, one to evaluate
    argv += ["--out", str(tmp_path / "ckpt"), "--run-dir", str(tmp_path / "run")]
    _, modules = _run_training(argv, tmp_path)
    assert (tmp_path / "ckpt" / "manifest.json").is_file()  # it trained and wrote a checkpoint
    assert _imported(modules, "training.fit")
    assert [name for name in NOT_FOR_FIT if _imported(modules, name)] == []
