"""The checkpoint format: the one reader and writer shared by training and the service.

A checkpoint is a directory:
    backbone.safetensors   main network weights (no pickle)
    agent.safetensors      agent weights
    config.json            format version, model config, name, version, classes, preprocessing,
                           training config
    metrics.json           evaluation numbers shipped with the weights
    manifest.json          sha256 and size of every file above and of any extra file
                           (tokenizer.json, ONNX exports)

Loading verifies the manifest first and refuses, naming the file, on a missing or altered file,
an unknown format version, or weights whose names or shapes don't match the config.
"""

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.config import ModelConfig
from model.network import DynaLayNet, build_model

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
METRICS = "metrics.json"
BACKBONE = "backbone.safetensors"
AGENT = "agent.safetensors"
_AGENT_PREFIX = "agent."


class CheckpointError(ValueError):
    """A checkpoint that must not be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    net: DynaLayNet
    config: ModelConfig
    name: str
    version: str
    classes: tuple[str, ...]
    preprocessing: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    directory: Path = Path(".")


def save_checkpoint(
    directory: str | Path,
    net: DynaLayNet,
    *,
    name: str,
    version: str,
    classes: list[str] | tuple[str, ...],
    preprocessing: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    extra_files: dict[str, bytes | Path] | None = None,
) -> Path:
    """Write `net` and its card into `directory` (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if len(classes) != net.config.n_classes:
        raise ValueError(f"{len(classes)} class names for {net.config.n_classes} classes")
    backbone, agent = _split_state(net)
    save_file(backbone, str(directory / BACKBONE))
    save_file(agent, str(directory / AGENT))
    card = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "model": net.config.to_dict(),
        "classes": list(classes),
        "preprocessing": preprocessing,
        "train": train or {},
    }
    _write_json(directory / CONFIG, card)
    _write_json(directory / METRICS, metrics or {})
    _write_extra(directory, extra_files or {})
    _write_manifest(directory, [BACKBONE, AGENT, CONFIG, METRICS, *(extra_files or {})])
    return directory


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Verify and load a checkpoint directory; the network comes back in eval mode.

    >>> net = build_model(ModelConfig(n_classes=2, width=8))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = save_checkpoint(tmp, net, name="demo", version="0.1.0", classes=["cat", "dog"],
    ...                         preprocessing={})
    ...     loaded = load_checkpoint(tmp)
    >>> loaded.name, loaded.classes, loaded.config == net.config, loaded.net.training
    ('demo', ('cat', 'dog'), True, False)
    """
    directory = Path(directory)
    _verify_manifest(directory)
    card = _read_json(directory / CONFIG)
    if card.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory / CONFIG}: format_version {card.get('format_version')!r} is not "
            f"supported (this build reads {FORMAT_VERSION})"
        )
    try:
        config = ModelConfig.from_dict(card["model"])
        name, version = str(card["name"]), str(card["version"])
        classes = tuple(str(c) for c in card["classes"])
        preprocessing = dict(card["preprocessing"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{directory / CONFIG}: invalid model card: {err}") from err
    net = build_model(config)
    _load_weights(net, directory)
    net = net.to(device).eval()
    return LoadedCheckpoint(
        net=net,
        config=config,
        name=name,
        version=version,
        classes=classes,
        preprocessing=preprocessing,
        metrics=_read_json(directory / METRICS),
        train=dict(card.get("train", {})),
        directory=directory,
    )


def write_metrics(directory: str | Path, metrics: dict[str, Any]) -> None:
    """Replace metrics.json and refresh the manifest."""
    directory = Path(directory)
    _verify_manifest(directory)
    _write_json(directory / METRICS, metrics)
    _write_manifest(directory, list(_read_json(directory / MANIFEST)["files"]))


def add_files(directory: str | Path, files: dict[str, bytes | Path]) -> None:
    """Add files (tokenizer, ONNX exports) to a checkpoint and its manifest."""
    directory = Path(directory)
    _verify_manifest(directory)
    _write_extra(directory, files)
    names = list(_read_json(directory / MANIFEST)["files"])
    _write_manifest(directory, names + [n for n in files if n not in names])


def manifest_files(directory: str | Path) -> list[str]:
    """Names of the files a checkpoint's manifest lists."""
    return list(_read_json(Path(directory) / MANIFEST)["files"])


# ---- weights ------------------------------------------------------------------------------


def _split_state(net: DynaLayNet) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    agent = {k: v for k, v in state.items() if k.startswith(_AGENT_PREFIX)}
    backbone = {k: v for k, v in state.items() if not k.startswith(_AGENT_PREFIX)}
    return backbone, agent


def _load_weights(net: DynaLayNet, directory: Path) -> None:
    expected = net.state_dict()
    state: dict[str, torch.Tensor] = {}
    for filename in (BACKBONE, AGENT):
        path = directory / filename
        try:
            part = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: unreadable safetensors file: {err}") from err
        for key, tensor in part.items():
            if key not in expected:
                raise CheckpointError(f"{path}: unexpected tensor {key!r} for this config")
            if tensor.shape != expected[key].shape:
                raise CheckpointError(
                    f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, the config "
                    f"needs {tuple(expected[key].shape)}"
                )
        state.update(part)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{directory}: weights missing for {missing[:5]}")
    net.load_state_dict(state, strict=True)


# ---- manifest and files ---------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(directory: Path, names: list[str]) -> None:
    files = {
        n: {"sha256": _sha256(directory / n), "bytes": (directory / n).stat().st_size}
        for n in names
    }
    _write_json(directory / MANIFEST, {"format_version": FORMAT_VERSION, "files": files})


def _verify_manifest(directory: Path) -> None:
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory")
    manifest = _read_json(directory / MANIFEST)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{directory / MANIFEST}: lists no files")
    for required in (BACKBONE, AGENT, CONFIG, METRICS):
        if required not in files:
            raise CheckpointError(f"{directory / MANIFEST}: does not list {required}")
    for name, entry in files.items():
        path = directory / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(
                f"{directory / MANIFEST}: file name {name!r} leaves the directory"
            )
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {MANIFEST})")
        if _sha256(path) != entry.get("sha256"):
            raise CheckpointError(
                f"{path}: sha256 does not match {MANIFEST} (altered or truncated)"
            )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable JSON: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Write-then-rename so a crash never leaves half a file behind.
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def _write_extra(directory: Path, files: dict[str, bytes | Path]) -> None:
    for name, content in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content if isinstance(content, bytes) else Path(content).read_bytes()
        target.write_bytes(data)
