#!/usr/bin/env python3
"""Write scikit-learn's handwritten digits as PNG class folders, for `--dataset imagefolder`.

    python scripts/export_digits.py data/digits --npz sklearn_digits.npz  # x (N, 8, 8), y (N,)
    python scripts/export_digits.py data/digits         # sklearn's bundled copy, if installed

writes OUT/train/<digit>/<i>.png and OUT/val/<digit>/<i>.png (a seeded `--val-fraction` of
each digit): 8×8 grayscale images, their 0..16 ink levels scaled to 0..255 (white on black).
Training resizes them to the model's input size as the service does. Needs numpy and Pillow.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def load_digits(npz: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 8, 8) on 0..16 and labels (N,)."""
    if npz is not None:
        with np.load(npz) as data:
            return data["x"], data["y"]
    try:
        from sklearn.datasets import load_digits as bundled
    except ImportError:
        raise SystemExit("scikit-learn is not installed: pass --npz FILE (keys x, y)") from None
    digits = bundled()
    return digits.images.astype(np.uint8), digits.target


def export(x: np.ndarray, y: np.ndarray, out: Path, val_fraction: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        n_val = round(len(rows) * val_fraction)
        for split, part in (("val", rows[:n_val]), ("train", rows[n_val:])):
            folder = out / split / NAMES[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                pixels = (x[i].astype(np.float32) * (255.0 / 16.0)).round().astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{i:05d}.png")
            counts[f"{split}/{NAMES[int(label)]}"] = len(part)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--npz", type=Path, help="digits as x (N, 8, 8) 0..16 and y (N,)")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    x, y = load_digits(args.npz)
    counts = export(x, y, args.out, args.val_fraction, args.seed)
    print(f"wrote {sum(counts.values())} PNGs under {args.out} ({len(set(y.tolist()))} classes)")


if __name__ == "__main__":
    main()
