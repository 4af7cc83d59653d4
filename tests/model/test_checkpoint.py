"""Checkpoint round trip and refusals (tampered, truncated, missing, wrong version/shape)."""

import json

import pytest
import torch

from model.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    add_files,
    load_checkpoint,
    manifest_files,
    save_checkpoint,
    write_metrics,
)
from model.config import ModelConfig
from model.network import build_model
from tests.model.conftest import TINY_CNN, TINY_LSTM, cnn_batch, lstm_batch

IMAGE_PREP = {"kind": "image", "image_size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3}
CLASSES = [f"c{i}" for i in range(10)]


def _save(tmp_path, config=TINY_CNN, classes=CLASSES, **kw):
    torch.manual_seed(0)
    net = build_model(config).eval()
    # Make the agent non-trivial so its weights matter in the round trip.
    torch.nn.init.normal_(net.agent.net[-1].weight)
    path = save_checkpoint(
        tmp_path / "ckpt",
        net,
        name="tiny",
        version="1",
        classes=classes,
        preprocessing=IMAGE_PREP,
        metrics={"accuracy": 0.5},
        **kw,
    )
    return net, path


def test_round_trip_gives_identical_outputs(tmp_path):
    net, path = _save(tmp_path)
    loaded = load_checkpoint(path)
    x = cnn_batch(6).float()
    with torch.no_grad():
        a, b = net(x), loaded.net(x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.actions, b.actions)
    assert loaded.config == TINY_CNN
    assert loaded.classes == tuple(CLASSES) and loaded.preprocessing == IMAGE_PREP
    assert loaded.metrics == {"accuracy": 0.5} and not loaded.net.training


def test_round_trip_lstm(tmp_path):
    net, path = _save(tmp_path, config=TINY_LSTM, classes=["negative", "positive"])
    loaded = load_checkpoint(path)
    tokens, lengths = lstm_batch(5)
    with torch.no_grad():
        assert torch.equal(
            net(tokens, lengths=lengths).logits, loaded.net(tokens, lengths=lengths).logits
        )


def test_weights_are_safetensors_not_pickle(tmp_path):
    _, path = _save(tmp_path)
    for name in ("backbone.safetensors", "agent.safetensors"):
        head = (path / name).read_bytes()[:16]
        assert not head.startswith(b"\x80")  # pickle protocol marker
        header_len = int.from_bytes(head[:8], "little")
        json.loads((path / name).read_bytes()[8 : 8 + header_len])  # safetensors JSON header


def test_tampered_file_is_refused_naming_it(tmp_path):
    _, path = _save(tmp_path)
    data = bytearray((path / "backbone.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "backbone.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="backbone.safetensors.*sha256"):
        load_checkpoint(path)


def test_truncated_file_is_refused(tmp_path):
    _, path = _save(tmp_path)
    data = (path / "agent.safetensors").read_bytes()
    (path / "agent.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="agent.safetensors"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["backbone.safetensors", "config.json", "manifest.json"])
def test_missing_file_is_refused(tmp_path, name):
    _, path = _save(tmp_path)
    (path / name).unlink()
    with pytest.raises(CheckpointError, match=name):
        load_checkpoint(path)


def test_unknown_format_version_is_refused(tmp_path):
    _, path = _save(tmp_path)
    card = json.loads((path / "config.json").read_text())
    card["format_version"] = FORMAT_VERSION + 1
    (path / "config.json").write_text(json.dumps(card))
    _rehash(path)
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(path)


def test_shape_mismatch_is_refused(tmp_path):
    _, path = _save(tmp_path)
    card = json.loads((path / "config.json").read_text())
    card["model"]["width"] = 16
    (path / "config.json").write_text(json.dumps(card))
    _rehash(path)
    with pytest.raises(CheckpointError, match="backbone.safetensors.*shape"):
        load_checkpoint(path)


def test_unknown_config_key_is_refused(tmp_path):
    _, path = _save(tmp_path)
    card = json.loads((path / "config.json").read_text())
    card["model"]["n_heads"] = 4
    (path / "config.json").write_text(json.dumps(card))
    _rehash(path)
    with pytest.raises(CheckpointError, match="config.json.*n_heads"):
        load_checkpoint(path)


def test_write_metrics_and_add_files_keep_manifest_valid(tmp_path):
    _, path = _save(tmp_path, extra_files={"notes.txt": b"hello"})
    write_metrics(path, {"accuracy": 0.9})
    add_files(path, {"tokenizer.json": b"{}"})
    loaded = load_checkpoint(path)
    assert loaded.metrics == {"accuracy": 0.9}
    assert {"notes.txt", "tokenizer.json"} <= set(manifest_files(path))
    (path / "tokenizer.json").write_bytes(b"{ }")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_checkpoint(path)


def test_class_count_must_match(tmp_path):
    with pytest.raises(ValueError, match="class names"):
        save_checkpoint(
            tmp_path,
            build_model(ModelConfig(width=8)),
            name="x",
            version="1",
            classes=["a"],
            preprocessing=IMAGE_PREP,
        )


def _rehash(path):
    """Re-sign a deliberately edited checkpoint, as a careless tool might."""
    from model import checkpoint

    checkpoint._write_manifest(path, manifest_files(path))
