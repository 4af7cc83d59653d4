"""Test-set accuracy of a checkpoint in each precision, and how far each agrees with fp32.

    python scripts/precision_accuracy.py [CHECKPOINT] --data-dir data [--n N]
        [--batch-size 32] [--layout nchw] [--out reports/cifar10/precision_accuracy.json]
        [--onnx-cache runs/onnx-cache]

Runs the PyTorch engine in fp32 and in every reduced precision this machine computes natively
(service/engines/precision.py), and the ONNX engine in int8 (service/engines/int8.py: calibrated
on the checkpoint's calibration set, training images; image models only), each built
directly, past the parity gate, on the first `n` *test* inputs (default: all) of CIFAR-10,
CIFAR-100 or, for a text (LSTM) checkpoint, IMDB, tokenised as the checkpoint was trained;
the agent deciding. Reports per
precision: accuracy, the agent's action shares, and the shares of labels and actions equal to
fp32's (what the parity gate checks on the training-image calibration set, here on the test
set).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch

from model.actions import ACTIONS
from model.calibration import CalibrationSet
from model.checkpoint import load_checkpoint
from service.engines import (
    Engine,
    EngineInput,
    Mode,
    TorchEngine,
    agreement,
    int8_engine,
    run_set,
    runnable,
)
from training.data.cifar import load_cifar
from training.data.text.prepare import checkpoint_split

DATASETS = {10: "cifar10", 100: "cifar100"}  # by the checkpoint's number of classes


def evaluate(
    checkpoint: Path, data_dir: Path, n: int | None, batch_size: int, layout: str, onnx_cache: Path
) -> dict:
    loaded = load_checkpoint(checkpoint)
    inputs, labels = test_inputs(loaded, data_dir, n)
    n = len(inputs)
    results, reference = {}, None
    for precision, engine in engines(loaded, layout, onnx_cache):
        samples, _ = run_set(engine, inputs, batch_size)
        reference = reference or samples
        same_labels, same_actions = agreement(reference, samples)
        actions = Counter(ACTIONS[s.action] for s in samples)
        results[precision] = {
            "accuracy": sum(s.class_index == y for s, y in zip(samples, labels, strict=True)) / n,
            "label_agreement_with_fp32": same_labels,
            "action_agreement_with_fp32": same_actions,
            "action_shares": {a: c / n for a, c in sorted(actions.items())},
        }
    return {"checkpoint": str(checkpoint), "n": n, "layout": layout, "precisions": results}


def test_inputs(loaded, data_dir: Path, n: int | None) -> tuple[list[EngineInput], list[int]]:
    """The first `n` test inputs as the engines take them, and their labels."""
    if loaded.config.arch == "lstm":
        split = checkpoint_split(loaded, "imdb", data_dir, "test", n)
        rows = zip(split.tokens, split.lengths, strict=True)
        inputs = [EngineInput(tokens[:length].numpy()) for tokens, length in rows]  # (T,) each
        return inputs, split.targets.tolist()
    split = load_cifar(DATASETS[loaded.config.n_classes], data_dir, "test")
    split = split.subset(n) if n else split
    images = CalibrationSet(split.images, split.labels).normalised(loaded.preprocessing)
    return [EngineInput(x) for x in images.numpy()], split.labels.tolist()  # (3, H, W) each


def engines(loaded, layout: str, onnx_cache: Path) -> Iterator[tuple[str, Engine]]:
    """(precision, engine): torch fp32 first (the reference), torch's reduced precisions, int8."""
    for precision in ("fp32", *runnable(torch.device("cpu"))):
        yield precision, TorchEngine(loaded, "cpu", Mode(precision, layout))
    int8 = int8_engine(loaded, "cpu", onnx_cache)
    if int8 is not None:
        yield "int8", int8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, nargs="?", default=Path("checkpoints/cifar10"))
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--n", type=int, default=None, help="test inputs (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw")
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    parser.add_argument(
        "--onnx-cache", type=Path, default=Path("runs/onnx-cache"), help="ONNX export cache"
    )
    args = parser.parse_args(argv)
    report = evaluate(
        args.checkpoint, args.data_dir, args.n, args.batch_size, args.layout, args.onnx_cache
    )
    for precision, row in report["precisions"].items():
        print(
            f"{precision}: accuracy {row['accuracy']:.4f}, labels as fp32 "
            f"{row['label_agreement_with_fp32']:.4f}, actions as fp32 "
            f"{row['action_agreement_with_fp32']:.4f}, actions {row['action_shares']}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
