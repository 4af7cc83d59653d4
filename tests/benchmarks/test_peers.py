"""The peer benchmark runs LitServe and our server on one tiny checkpoint and compares them."""

from __future__ import annotations

import json

import numpy as np

from benchmarks.peers.__main__ import main
from tests.service.helpers import write_cnn_checkpoint

RECORD = 1 + 3 * 32 * 32  # CIFAR-10 binary: label byte + CHW pixels


def write_cifar_test_batch(root, n: int = 6) -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, size=(n, RECORD), dtype=np.uint8)
    rows[:, 0] = rng.integers(0, 10, size=n)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rows.tofile(folder / "test_batch.bin")


def test_litserve_and_ours_answer_alike_and_every_load_is_measured(tmp_path):
    checkpoint = write_cnn_checkpoint(tmp_path / "models")
    write_cifar_test_batch(tmp_path / "data")
    out = tmp_path / "peers.json"
    argv = ["--checkpoint", str(checkpoint), "--data-dir", str(tmp_path / "data")]
    argv += ["--images", "6", "--accuracy-n", "6", "--rounds", "1", "--seconds", "1"]
    argv += ["--concurrency", "2", "--servers", "litserve,ours fp32", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    # Same checkpoint, same fp32 forward, same PNGs: the same class for every image.
    assert report["answers"]["litserve"] == report["answers"]["ours fp32"]
    assert -1 not in report["answers"]["litserve"]
    loads = {(r["server"], r["connection"]) for r in report["rounds"]}
    assert loads == {(s, c) for s in ("litserve", "ours fp32") for c in ("new", "keep-alive")}
    assert all(r["failures"] == 0 for r in report["rounds"])
    assert {r["server"] for r in report["ratios"]} <= {"ours fp32"}  # ours / LitServe only
    assert "cpu_flags" in report["host"]
