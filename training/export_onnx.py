"""`python -m training export-onnx CHECKPOINT`: add a verified ONNX export to a checkpoint.

    python -m training export-onnx CHECKPOINT [--opset 17] [--no-verify] [--quiet]

The export itself is model/onnx_export.py (the ONNX engine also uses it to export on load into
its cache); this writes the parts into the checkpoint's `onnx/` folder and its manifest, so the
checkpoint carries them wherever it is copied and the engine loads them without exporting.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from model.checkpoint import add_files, load_checkpoint
from model.onnx_export import (
    DEFAULT_OPSET,
    EXPORT_CARD,
    ONNX_DIR,
    VERIFY_TOL,
    ExportError,
    export_network,
    weights_sha256,
)

__all__ = ["EXPORT_CARD", "VERIFY_TOL", "ExportError", "export_onnx", "main", "run"]


def export_onnx(
    checkpoint_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    quiet: bool = True,
) -> list[str]:
    """Export, check, verify and add the parts to the checkpoint. Returns the files added."""
    directory = Path(checkpoint_dir)
    net = load_checkpoint(directory, device="cpu").net
    try:
        exported = export_network(net, weights_sha256(directory), opset, verify, quiet)
    except ExportError as err:
        raise ExportError(f"{directory}: {err}") from None
    files = exported.files()
    add_files(directory, dict(files))
    return list(files)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The export's flags, for this module's main and for the `python -m training` CLI."""
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    files = export_onnx(args.checkpoint, args.opset, not args.no_verify, args.quiet)
    card = json.loads((args.checkpoint / EXPORT_CARD).read_text(encoding="utf-8"))
    for name, diff in (card["verified_max_abs_diff"] or {}).items():
        print(f"{name:8s} max |onnx - torch| = {diff:.2e}")
    print(f"wrote {len(files)} files under {args.checkpoint / ONNX_DIR}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training export-onnx",
        description="Export a checkpoint's parts to ONNX (into CHECKPOINT/onnx/, in its manifest).",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
