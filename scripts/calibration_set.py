"""Add a calibration set (CIFAR *training* images) to an image checkpoint.

    python scripts/calibration_set.py checkpoints/cifar10 --data-dir data [--n 512] [--seed 0]

Draws `n` images of the dataset's training split (seeded, without replacement) and writes
them with their labels as the checkpoint's `calibration.safetensors` (model/calibration.py),
through `model.checkpoint.add_files`, so the manifest lists and checksums it. The service's
parity gate (service/engines/parity.py) runs reduced precisions against fp32 on these images
at load. Training images, not test images: the gate must not be tuned on what the model is
reported on. Running it again replaces the set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model.calibration import CALIBRATION, CalibrationSet, load_calibration
from model.checkpoint import add_files, load_checkpoint
from training.data.cifar import load_cifar

DATASETS = {10: "cifar10", 100: "cifar100"}  # by the checkpoint's number of classes


def draw(dataset: str, data_dir: Path, n: int, seed: int) -> CalibrationSet:
    """n training images of `dataset` and their labels, drawn without replacement."""
    split = load_cifar(dataset, data_dir, "train")
    if not 0 < n <= len(split):
        raise SystemExit(f"--n must be in 1..{len(split)}, got {n}")
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(split), generator=generator)[:n].sort().values
    return CalibrationSet(split.images[rows].contiguous(), split.labels[rows].clone())


def add_calibration(checkpoint: Path, data_dir: Path, n: int, seed: int) -> CalibrationSet:
    loaded = load_checkpoint(checkpoint)  # verifies the manifest before anything is written
    if loaded.config.arch != "cnn":
        raise SystemExit(f"{checkpoint}: a calibration set of images needs an image model")
    dataset = DATASETS.get(loaded.config.n_classes)
    if dataset is None:
        raise SystemExit(f"{checkpoint}: {loaded.config.n_classes} classes is no CIFAR dataset")
    calibration = draw(dataset, data_dir, n, seed)
    size = tuple(loaded.preprocessing.get("image_size", (32, 32)))
    if tuple(calibration.images.shape[2:]) != tuple(int(s) for s in size):
        raise SystemExit(f"{checkpoint}: the model takes {size} images, CIFAR's are 32×32")
    add_files(checkpoint, {CALIBRATION: calibration.to_bytes()})
    return calibration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--n", type=int, default=512, help="images (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="which images (default 0)")
    args = parser.parse_args(argv)
    calibration = add_calibration(args.checkpoint, args.data_dir, args.n, args.seed)
    reread = load_calibration(args.checkpoint)  # through the manifest, as the service reads it
    assert reread is not None and torch.equal(reread.images, calibration.images)
    counts = torch.bincount(calibration.labels).tolist()
    print(f"{args.checkpoint / CALIBRATION}: {len(calibration)} training images, by class {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
