"""The export: checked graphs in the manifest, verified against PyTorch, refused when altered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, manifest_files, save_checkpoint
from model.onnx_parts import PART_NAMES
from service.engines import ENGINES, OnnxEngineError
from training.export_onnx import EXPORT_CARD, VERIFY_TOL, main


@pytest.fixture
def copy_of(tmp_path: Path, onnx_repo: Path):
    """A private copy of an exported checkpoint, safe to alter."""
    return lambda name: Path(shutil.copytree(onnx_repo / name, tmp_path / name))


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_every_part_is_in_the_manifest_checked_and_verified(onnx_repo: Path, name: str) -> None:
    directory = onnx_repo / name
    listed = manifest_files(directory)
    card = json.loads((directory / EXPORT_CARD).read_text())
    assert EXPORT_CARD in listed and card["arch"] == name
    for part in PART_NAMES:
        assert f"onnx/{part}.onnx" in listed
        onnx.checker.check_model(str(directory / f"onnx/{part}.onnx"), full_check=True)
        assert 0.0 <= card["verified_max_abs_diff"][part] <= VERIFY_TOL * card["scale"][part]
    load_checkpoint(directory)  # the manifest, ONNX files included, verifies


def test_cli_reexports_and_reports(copy_of, capsys: pytest.CaptureFixture[str]) -> None:
    directory = copy_of("lstm")
    assert main([str(directory), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "layer1" in out and "max |onnx - torch|" in out
    load_checkpoint(directory)


def test_a_tampered_onnx_file_is_refused(copy_of) -> None:
    directory = copy_of("cnn")
    layer = directory / "onnx" / "layer2.onnx"
    layer.write_bytes(layer.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="layer2.onnx"):
        load_checkpoint(directory)
    with pytest.raises(CheckpointError, match="layer2.onnx"):
        ENGINES["onnx"](directory, "cpu")


def test_a_checkpoint_without_export_names_the_command(copy_of) -> None:
    directory = copy_of("cnn")
    loaded = load_checkpoint(directory)
    save_checkpoint(  # rewrites the manifest without the ONNX files, as a retrain would
        directory,
        loaded.net,
        name=loaded.name,
        version=loaded.version,
        classes=loaded.classes,
        preprocessing=loaded.preprocessing,
    )
    with pytest.raises(OnnxEngineError, match="python -m training export-onnx"):
        ENGINES["onnx"](directory, "cpu")


def test_a_stale_export_is_refused(copy_of) -> None:
    directory = copy_of("cnn")
    loaded = load_checkpoint(directory)
    with torch.no_grad():
        loaded.net.backbone.fc.bias.add_(0.5)  # retrained weights, old ONNX files kept
    exported = [n for n in manifest_files(directory) if n.startswith("onnx/")]
    save_checkpoint(
        directory,
        loaded.net,
        name=loaded.name,
        version=loaded.version,
        classes=loaded.classes,
        preprocessing=loaded.preprocessing,
        extra_files={n: (directory / n).read_bytes() for n in exported},
    )
    with pytest.raises(OnnxEngineError, match="stale"):
        ENGINES["onnx"](directory, "cpu")
