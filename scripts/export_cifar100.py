#!/usr/bin/env python3
"""Write the official CIFAR-100 binary layout from a packed copy (cifar100-carry.npz).

    python scripts/export_cifar100.py $SHARED/cifar100/cifar100-carry.npz data

(`make data` runs this with the Makefile's SHARED folder.)

writes data/cifar-100-binary/{train.bin,test.bin,fine_label_names.txt,coarse_label_names.txt}:
records of coarse byte, fine byte, 3072 pixel bytes (R, G, B planes, row-major) — the layout
the CIFAR site ships. The npz stores each split as one image mosaic of 32×32 tiles, 100 per row.
Needs numpy and Pillow.
"""

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def tiles(blob: np.ndarray, cols: int = 100) -> np.ndarray:
    """Encoded mosaic → uint8 (N, 32, 32, 3), row-major tile order."""
    mosaic = np.asarray(Image.open(io.BytesIO(blob.tobytes())).convert("RGB"))
    rows = mosaic.shape[0] // 32
    grid = mosaic.reshape(rows, 32, cols, 32, 3).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * cols, 32, 32, 3)


def records(x: np.ndarray, coarse: np.ndarray, fine: np.ndarray) -> bytes:
    planar = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # NHWC → N, (C, H, W)
    labels = np.stack([coarse, fine], axis=1).astype(np.uint8)
    return np.concatenate([labels, planar], axis=1).tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("npz", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    d = np.load(args.npz)
    meta = json.loads(str(d["meta"]))
    out = args.out / "cifar-100-binary"
    out.mkdir(parents=True, exist_ok=True)
    for split, blob in (("train", "train_jpeg_q95"), ("test", "test_webp_lossless")):
        x = tiles(d[blob])
        coarse, fine = d[f"y_{split}_coarse"], d[f"y_{split}"]
        assert len(x) == len(fine) == len(coarse), split
        (out / f"{split}.bin").write_bytes(records(x, coarse, fine))
    (out / "fine_label_names.txt").write_text("\n".join(meta["classes"]) + "\n")
    (out / "coarse_label_names.txt").write_text("\n".join(meta["coarse_classes"]) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
