"""The tiny fit → evaluate → load cycle through the CLI, on synthetic official-layout files."""

import json

import pytest
import torch
from safetensors.torch import load_file

from model.checkpoint import load_checkpoint
from training.cli import main
from training.trainer import epoch as trainer

CHECKS = ("accuracy", "mean_layer_evaluations", "action_frequencies", "forced", "oracle", "gate")


def test_fit_writes_a_loadable_checkpoint_with_history(trained):
    ckpt = load_checkpoint(trained["out"])
    assert ckpt.name == "ckpt" and len(ckpt.classes) == 10
    assert ckpt.preprocessing["kind"] == "image" and len(ckpt.preprocessing["mean"]) == 3
    assert ckpt.train["config"]["phases"]["backbone_epochs"] == 1
    assert set(CHECKS) <= set(ckpt.metrics)
    history = json.loads((trained["out"] / "history.json").read_text())
    assert [r["phase"] for r in history] == ["backbone", "agent", "joint"]
    assert "sampled_action_frequencies" in history[1]["train"] and "test" in history[-1]
    assert history == json.loads((trained["run"] / "history.json").read_text())


def test_loaded_checkpoint_gives_the_trained_outputs(trained):
    ckpt = load_checkpoint(trained["out"])
    net = type(ckpt.net)(ckpt.config)
    net.load_state_dict(load_file(str(trained["run"] / "state" / "model.safetensors")))
    net.eval()
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ckpt.net(x), net(x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.actions, b.actions)


def test_evaluate_reproduces_the_fit_metrics_and_writes_them(trained, tmp_path, capsys):
    before = load_checkpoint(trained["out"]).metrics
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(trained["out"]), "--data-dir", str(trained["data"])]
    argv += ["--output", str(out)]
    assert main(argv) == 0
    assert "oracle" in capsys.readouterr().out
    written = json.loads(out.read_text())
    stored = load_checkpoint(trained["out"]).metrics  # manifest refreshed, still loads
    assert stored == written
    for key in ("accuracy", "mean_layer_evaluations", "forced", "oracle", "action_frequencies"):
        assert _flat(written[key]) == pytest.approx(_flat(before[key]), abs=1e-6), key
    sweep, forced = written["gate"]["sweep"], written["forced"]
    assert sweep[0]["accuracy"] == pytest.approx(forced["straight"]["accuracy"])  # never loops
    assert sweep[-1]["accuracy"] == pytest.approx(forced["loop_all"]["accuracy"])  # always


def _flat(value, prefix=""):
    """Nested dicts → {"a.b": number} so pytest.approx can compare them."""
    if isinstance(value, dict):
        return {k: v for key, s in value.items() for k, v in _flat(s, f"{prefix}{key}.").items()}
    return {prefix: value}


def test_interrupted_fit_resumes_from_the_saved_epoch(tmp_path, cifar10_dir, monkeypatch):
    argv = [
        "fit",
        "--dry-run",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(cifar10_dir),
        "--out",
        str(tmp_path / "ckpt"),
        "--run-dir",
        str(tmp_path / "run"),
        "--quiet",
        "--max-batches",
        "2",
    ]
    real = trainer.run_epoch
    calls = []

    def crash_on_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr("training.trainer.session.run_epoch", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    first = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(first) == 1 and not (tmp_path / "ckpt").exists()
    monkeypatch.setattr("training.trainer.session.run_epoch", real)
    assert main(argv) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3] and history[0] == first[0]
    with pytest.raises(ValueError, match="different config"):
        main([*argv, "--lr", "0.5"])


def test_dry_run_without_data_uses_in_memory_synthetic_data(tmp_path):
    argv = [
        "fit",
        "--dry-run",
        "--out",
        str(tmp_path / "c"),
        "--run-dir",
        str(tmp_path / "r"),
        "--quiet",
        "--max-batches",
        "1",
        "--synthetic-size",
        "64",
    ]
    assert main(argv) == 0
    assert load_checkpoint(tmp_path / "c").train["config"]["data"]["dataset"] == "synthetic"


def test_a_fit_started_from_a_checkpoint_records_every_fit_wall_time(trained, tmp_path):
    from training.cli import main as cli

    out = tmp_path / "fit2"
    argv = ["fit", "--dry-run", "--dataset", "cifar10", "--data-dir", str(trained["data"])]
    argv += ["--init-from", str(trained["out"]), "--epochs", "1,0,0", "--out", str(out)]
    assert cli([*argv, "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    train = load_checkpoint(out).train
    first = load_checkpoint(trained["out"]).train
    assert [f["name"] for f in train["fits"]] == [first["fits"][0]["name"], "fit2"]
    assert train["total_wall_seconds"] == pytest.approx(
        first["wall_seconds"] + train["wall_seconds"], abs=0.2
    )
