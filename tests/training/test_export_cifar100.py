"""scripts/export_cifar100.py: our shared CIFAR-100 copy (image mosaics in an npz) → the
official binary layout, read back by the training loader pixel for pixel."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from training.data.cifar import load_cifar

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "export_cifar100.py"


def _mosaic(x: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) with N a multiple of 100 → PNG bytes of the 100-per-row mosaic."""
    rows = len(x) // 100
    grid = x.reshape(rows, 100, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, 3200, 3)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")  # lossless, like the test split's WebP
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def test_export_writes_the_official_layout(tmp_path):
    rng = np.random.default_rng(0)
    x = {
        s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        for s, n in (("train", 200), ("test", 100))
    }
    fine = {s: rng.integers(0, 100, len(x[s]), dtype=np.uint8) for s in x}
    coarse = {s: fine[s] // 5 for s in x}
    classes = [f"fine{i}" for i in range(100)]
    meta = {"classes": classes, "coarse_classes": [f"coarse{i}" for i in range(20)]}
    npz = tmp_path / "carry.npz"
    np.savez(
        npz,
        train_jpeg_q95=_mosaic(x["train"]),
        test_webp_lossless=_mosaic(x["test"]),
        **{f"y_{s}": fine[s] for s in x},
        **{f"y_{s}_coarse": coarse[s] for s in x},
        meta=np.array(json.dumps(meta)),
    )
    subprocess.run([sys.executable, str(SCRIPT), str(npz), str(tmp_path)], check=True)

    raw = np.fromfile(tmp_path / "cifar-100-binary" / "test.bin", dtype=np.uint8).reshape(-1, 3074)
    assert raw[:, 0].tolist() == coarse["test"].tolist()  # coarse byte first, then fine
    for split in ("train", "test"):
        loaded = load_cifar("cifar100", tmp_path, split)
        assert loaded.classes == tuple(classes)
        np.testing.assert_array_equal(np.asarray(loaded.labels), fine[split])
        np.testing.assert_array_equal(np.asarray(loaded.images), x[split].transpose(0, 3, 1, 2))
