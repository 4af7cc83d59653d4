"""Export on load: a checkpoint without ONNX parts is served from a verified cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint, manifest_files, save_checkpoint
from service.engines import ENGINES, OnnxEngineError, engine_factories, run_batch
from tests.onnx.helpers import as_batch, inputs_for


def _strip_export(directory: Path, bump_bias: float = 0.0, keep_onnx: bool = False) -> None:
    """Rewrite the checkpoint as a retrain would: without its ONNX files, or with stale ones."""
    loaded = load_checkpoint(directory)
    with torch.no_grad():
        loaded.net.backbone.fc.bias.add_(bump_bias)
    exported = [n for n in manifest_files(directory) if n.startswith("onnx/")]
    extra = {n: (directory / n).read_bytes() for n in exported} if keep_onnx else {}
    if (directory / "tokenizer.json").exists():
        extra["tokenizer.json"] = (directory / "tokenizer.json").read_bytes()
    if not keep_onnx:
        shutil.rmtree(directory / "onnx")
    save_checkpoint(
        directory,
        loaded.net,
        name=loaded.name,
        version=loaded.version,
        classes=loaded.classes,
        preprocessing=loaded.preprocessing,
        extra_files=extra,
    )


@pytest.fixture
def bare(tmp_path: Path, onnx_repo: Path):
    """A private copy of a fixture checkpoint without its ONNX export."""

    def make(name: str, **changes) -> Path:
        directory = Path(shutil.copytree(onnx_repo / name, tmp_path / "models" / name))
        _strip_export(directory, **changes)
        return directory

    return make


def _assert_answers_like_torch(directory: Path, engine) -> None:
    batch = as_batch(inputs_for(load_checkpoint(directory).config))
    want = run_batch(ENGINES["torch"](directory, "cpu").spec(), batch).samples
    got = run_batch(engine.spec(), batch).samples
    assert [s.action for s in got] == [s.action for s in want]
    assert [s.class_index for s in got] == [s.class_index for s in want]
    for g, w in zip(got, want, strict=True):
        assert (
            max(abs(a - b) for a, b in zip(g.probabilities, w.probabilities, strict=True)) <= 1e-4
        )


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_exports_on_load_then_reuses_the_cache(bare, tmp_path: Path, name: str) -> None:
    directory, cache = bare(name), tmp_path / "cache"
    with pytest.raises(OnnxEngineError, match="python -m training export-onnx"):
        ENGINES["onnx"](directory, "cpu")  # no cache configured: refused, naming the command
    factory = engine_factories(cache)["onnx"]
    first = factory(directory, "cpu")
    assert first.export.source == "exported" and first.export.root.parent == cache
    again = factory(directory, "cpu")
    assert again.export.source == "cache" and again.export.root == first.export.root
    assert not any(p.name.startswith(".") for p in cache.iterdir())  # no staging left behind
    _assert_answers_like_torch(directory, again)


def test_an_altered_cache_entry_is_exported_again(bare, tmp_path: Path) -> None:
    directory, cache = bare("cnn"), tmp_path / "cache"
    factory = engine_factories(cache)["onnx"]
    entry = factory(directory, "cpu").export.root
    layer = entry / "onnx" / "layer2.onnx"
    layer.write_bytes(layer.read_bytes()[:-1] + b"\x00")
    repaired = factory(directory, "cpu")
    assert repaired.export.source == "exported" and repaired.export.root == entry
    _assert_answers_like_torch(directory, repaired)
    (entry / "manifest.json").unlink()  # a half-written entry (killed mid-export)
    assert factory(directory, "cpu").export.source == "exported"


def test_a_stale_checkpoint_export_falls_back_to_the_cache(bare, tmp_path: Path) -> None:
    directory = bare("cnn", bump_bias=0.5, keep_onnx=True)  # new weights, old ONNX files
    with pytest.raises(OnnxEngineError, match="stale"):
        ENGINES["onnx"](directory, "cpu")
    engine = engine_factories(tmp_path / "cache")["onnx"](directory, "cpu")
    assert engine.export.source == "exported"
    _assert_answers_like_torch(directory, engine)


def test_the_checkpoint_export_is_used_when_current(onnx_repo: Path, tmp_path: Path) -> None:
    engine = engine_factories(tmp_path / "cache")["onnx"](onnx_repo / "cnn", "cpu")
    assert engine.export.source == "checkpoint" and not (tmp_path / "cache").exists()


def test_an_unwritable_cache_names_the_setting(bare, tmp_path: Path) -> None:
    directory = bare("cnn")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OnnxEngineError, match="DYNALAY_ONNX_CACHE_DIR"):
        engine_factories(blocker / "cache")["onnx"](directory, "cpu")
