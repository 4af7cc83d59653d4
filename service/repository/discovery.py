"""The model repository: find checkpoint directories, pick the device, load and warm engines.

A directory is a model when it holds a `manifest.json` (model/checkpoint.py writes one); the
model directory itself may be one. Everything here blocks: the app runs it in a worker thread.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from service.engines import Engine, EngineFactory
from service.inputs import ImageSpec, TextEncoder

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class RepositoryError(RuntimeError):
    """The model repository cannot be served as configured."""


def discover(model_dir: Path) -> list[Path]:
    """Model directories under `model_dir`, sorted by name."""
    if not model_dir.is_dir():
        raise RepositoryError(f"model directory {model_dir} does not exist")
    if (model_dir / MANIFEST).is_file():
        return [model_dir]
    found = sorted(p for p in model_dir.iterdir() if (p / MANIFEST).is_file())
    if not found:
        raise RepositoryError(f"no model directories (with {MANIFEST}) under {model_dir}")
    return found


def resolve_device(setting: str) -> str:
    """ "auto" → CUDA when present, else CPU; asking for CUDA without one is an error."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RepositoryError("DYNALAY_DEVICE=cuda but no CUDA device is available")
    return setting


def load_engine(factory: EngineFactory, directory: Path, device: str, warmup: bool) -> Engine:
    started = time.perf_counter()
    engine = factory(directory, device)
    if warmup:
        engine.warmup()
    meta = engine.meta
    log.info(
        "loaded %s %s (%s, %d classes) from %s on %s with %s in %.2f s",
        meta.name,
        meta.version,
        meta.modality,
        len(meta.classes),
        directory,
        device,
        engine.name,
        time.perf_counter() - started,
    )
    return engine


def input_pipeline(engine: Engine) -> tuple[ImageSpec | None, TextEncoder | None]:
    """The preprocessing the checkpoint asks for: an image spec or a text encoder."""
    meta = engine.meta
    if meta.modality == "image":
        return ImageSpec.from_preprocessing(meta.preprocessing), None
    if meta.modality == "text":
        return None, TextEncoder.from_checkpoint(meta.directory, meta.preprocessing)
    raise RepositoryError(f"{meta.directory}: unknown preprocessing kind {meta.modality!r}")
