"""The precision × layout benchmark runs on a tiny checkpoint and reports against fp32 NCHW."""

from __future__ import annotations

import json

import torch

from benchmarks import precisions as bench_precisions
from service.engines import LAYOUTS, runnable
from tests.service.helpers import write_cnn_checkpoint


def test_every_mode_is_timed_against_fp32_nchw(tmp_path):
    directory = write_cnn_checkpoint(tmp_path)
    out = tmp_path / "precisions.json"
    argv = [str(directory), "--data-dir", str(tmp_path / "no-data"), "--n", "4"]
    argv += ["--batch-size", "2", "--seconds", "0", "--json", str(out)]
    argv += ["--onnx-cache", str(tmp_path / "onnx-cache")]
    assert bench_precisions.main(argv) == 0  # no CIFAR here: the fixture PNGs
    report = json.loads(out.read_text())
    precisions = ("fp32", *runnable(torch.device("cpu")))
    assert [r["mode"] for r in report["results"]] == [
        *(f"{p}/{layout}" for p in precisions for layout in LAYOUTS),
        "onnx fp32",  # the tiny checkpoint ships no calibration set: no int8 row
    ]
    reference, nhwc = report["results"][:2]
    assert reference["speedup"] == 1.0 and reference["label_agreement"] == 1.0
    assert nhwc["label_agreement"] == 1.0  # the same fp32 sums in another order
    assert "fixture" in report["inputs"] and "cpu_flags" in report["host"]
