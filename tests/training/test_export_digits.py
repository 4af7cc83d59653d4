"""scripts/export_digits.py: digits in an npz → PNG class folders that imagefolder reads back."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import load_image_folder

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "export_digits.py"


def test_digits_become_class_folders_with_their_pixels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, (40, 8, 8), dtype=np.uint8)
    y = np.arange(40, dtype=np.uint8) % 4
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    out = tmp_path / "digits"
    cmd = [sys.executable, str(SCRIPT), str(out), "--npz", str(tmp_path / "digits.npz")]
    subprocess.run(cmd, check=True, capture_output=True)
    assert sorted(p.name for p in (out / "train").iterdir()) == ["one", "three", "two", "zero"]
    assert len(list((out / "val" / "two").iterdir())) == 2  # 20 % of 10
    first = np.asarray(Image.open(next((out / "train" / "zero").glob("*.png"))))
    index = int(next((out / "train" / "zero").glob("*.png")).stem)
    np.testing.assert_array_equal(first, np.round(x[index] * (255 / 16)).astype(np.uint8))
    data = load_image_folder(out, size=8)
    assert data.train.classes == ("one", "three", "two", "zero") and len(data.val) == 8
    assert not data.skipped
