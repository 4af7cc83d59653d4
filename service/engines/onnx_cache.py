"""Where the ONNX engine finds a checkpoint's parts: in the checkpoint, or exported on load.

1. The checkpoint's own export (`python -m training export-onnx CHECKPOINT`) is in its
   manifest, so `load_checkpoint` has verified it; it is used when it was made from the
   checkpoint's current weights.
2. Otherwise, given a cache directory (DYNALAY_ONNX_CACHE_DIR), the parts come from the cache
   entry of this checkpoint: one folder per model name and key, the key being the sha256 of the
   weights, the model config and the export format. An entry is laid out like a checkpoint
   (`onnx/<part>.onnx`, `onnx/export.json`) with its own `manifest.json` (sha256 and size of
   each file), and every load verifies it; a missing, partial, altered or stale entry is
   exported again (model/onnx_export.py: checked, and verified against PyTorch) and replaces it.
3. A fresh export is written into a temporary folder inside the cache and renamed into place,
   so two processes loading at once (replicas on one volume) never read half an entry.

Without a cache directory, a checkpoint without a current export is refused, naming the command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from model.checkpoint import LoadedCheckpoint, manifest_files
from model.config import ModelConfig
from model.onnx_export import (
    DEFAULT_OPSET,
    EXPORT_CARD,
    EXPORT_FORMAT,
    ExportError,
    export_network,
    weights_sha256,
)
from model.onnx_parts import part_names

log = logging.getLogger(__name__)

EXPORT_COMMAND = "python -m training export-onnx"
CACHE_MANIFEST = "manifest.json"


def part_files(config: ModelConfig) -> tuple[str, ...]:
    return tuple(f"onnx/{name}.onnx" for name in part_names(config))


class OnnxEngineError(RuntimeError):
    """The ONNX engine cannot serve this checkpoint on this device as configured."""


@dataclass(frozen=True)
class ExportLocation:
    root: Path  # the card's part files are relative to it
    card: dict  # onnx/export.json
    source: str  # "checkpoint", "cache" or "exported" (just now, into the cache)

    def part_path(self, part: str) -> Path:
        return self.root / self.card["parts"][part]["file"]


def locate_export(loaded: LoadedCheckpoint, cache_dir: Path | None) -> ExportLocation:
    """The parts to serve `loaded` with; exports them into `cache_dir` when needed."""
    directory, arch = loaded.directory, loaded.config.arch
    weights = weights_sha256(directory)
    files = part_files(loaded.config)
    problem = _checkpoint_export_problem(directory, arch, weights, files)
    if problem is None:
        return ExportLocation(directory, _read_card(directory), "checkpoint")
    if cache_dir is None:
        raise OnnxEngineError(f"{directory}: {problem}; run `{EXPORT_COMMAND} {directory}`")
    if problem.startswith("the ONNX export is stale"):
        log.warning("%s: %s; using the ONNX cache instead", directory, problem)
    entry = cache_dir / _entry_name(loaded, weights)
    if _entry_problem(entry, arch, weights, files) is None:
        return ExportLocation(entry, _read_card(entry), "cache")
    _export_into(entry, loaded, weights)
    return ExportLocation(entry, _read_card(entry), "exported")


# ---- the checkpoint's own export --------------------------------------------------------------


def _checkpoint_export_problem(
    directory: Path, arch: str, weights: dict, files: tuple[str, ...]
) -> str | None:
    listed = set(manifest_files(directory))
    missing = [name for name in (EXPORT_CARD, *files) if name not in listed]
    if missing:
        return f"no ONNX export ({', '.join(missing[:3])} not in the manifest)"
    card = _read_card(directory)
    if card.get("arch") != arch:
        return f"{EXPORT_CARD} was exported for {card.get('arch')!r}, not {arch!r}"
    if card.get("weights_sha256") != weights:
        return "the ONNX export is stale (the weights changed since it was made)"
    return None


# ---- the cache --------------------------------------------------------------------------------


def _entry_name(loaded: LoadedCheckpoint, weights: dict) -> str:
    """`<model>-<key>`: the key changes with anything that changes the graphs."""
    identity = {
        "weights": weights,
        "model": loaded.config.to_dict(),
        "format": EXPORT_FORMAT,
        "opset": DEFAULT_OPSET,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", loaded.name)[:64] or "model"
    return f"{safe}-{key}"


def _entry_problem(entry: Path, arch: str, weights: dict, files: tuple[str, ...]) -> str | None:
    """None when the entry is complete and every file matches its manifest."""
    try:
        listed = json.loads((entry / CACHE_MANIFEST).read_text(encoding="utf-8"))["files"]
        for name in (EXPORT_CARD, *files):
            want = listed[name]
            data = (entry / name).read_bytes()
            if len(data) != want["size"] or hashlib.sha256(data).hexdigest() != want["sha256"]:
                return f"{name} does not match the cache manifest"
        card = _read_card(entry)
    except FileNotFoundError:
        return "not exported yet"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable ({type(err).__name__}: {err})"
    if card.get("arch") != arch or card.get("weights_sha256") != weights:
        return "made from other weights"
    return None


def _export_into(entry: Path, loaded: LoadedCheckpoint, weights: dict) -> None:
    problem = _entry_problem(entry, loaded.config.arch, weights, part_files(loaded.config))
    log.info("%s: exporting the ONNX parts into %s (%s)", loaded.name, entry, problem)
    started = time.perf_counter()
    try:
        exported = export_network(loaded.net, weights)
    except ExportError as err:
        raise OnnxEngineError(f"{loaded.directory}: {err}") from None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        _write_entry(staging, exported.files())
        _publish(staging, entry, loaded.config.arch, weights, part_files(loaded.config))
    except OSError as err:
        raise OnnxEngineError(
            f"cannot write the ONNX cache under {entry.parent} ({err.strerror or err}): set "
            f"DYNALAY_ONNX_CACHE_DIR to a writable directory, or export into the checkpoint "
            f"with `{EXPORT_COMMAND} {loaded.directory}`"
        ) from None
    log.info("%s: ONNX parts exported and verified in %.1f s", loaded.name, _since(started))


def _write_entry(staging: Path, files: dict[str, bytes]) -> None:
    manifest = {}
    for name, data in files.items():
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        manifest[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    text = json.dumps({"files": manifest}, indent=2, sort_keys=True) + "\n"
    (staging / CACHE_MANIFEST).write_text(text, encoding="utf-8")


def _publish(staging: Path, entry: Path, arch: str, weights: dict, files: tuple[str, ...]) -> None:
    """Rename the staged entry into place; a good entry another process published wins."""
    try:
        if entry.exists():  # a bad entry: move it out of the way first (rename is atomic)
            stale = Path(tempfile.mkdtemp(prefix=f".{entry.name}.stale.", dir=entry.parent))
            os.replace(entry, stale / "entry")
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(staging, entry)
    except OSError:
        if _entry_problem(entry, arch, weights, files) is not None:
            raise
        log.info("%s was published by another process meanwhile; using it", entry)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)


def _read_card(root: Path) -> dict:
    return json.loads((root / EXPORT_CARD).read_text(encoding="utf-8"))


def _since(started: float) -> float:
    return time.perf_counter() - started
