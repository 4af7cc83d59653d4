"""Your own image folders: classes from folder names, service-identical decoding, bad files
skipped and reported, a seeded hold-out without val/, refusals that say what to change."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from service.inputs import ImageSpec, decode_image
from training.data import ImageFolderError, load_image_folder, load_split
from training.data.image_decode import decode_pixels
from training.data.image_folder import folder_report
from training.data.synthetic import write_image_folder

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _variety() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (45, 60, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), "RGBA")
    deep = Image.fromarray(rng.integers(0, 65535, (30, 50), dtype=np.uint16))  # I;16
    rotated = Image.Exif()
    rotated[0x0112] = 6  # EXIF orientation: rotate 90° on display
    return {
        "png-rgba": _encoded(rgba, "PNG"),
        "gif-palette": _encoded(rgb.convert("P"), "GIF"),
        "jpeg-exif": _encoded(rgb, "JPEG", exif=rotated),
        "jpeg-large": _encoded(rgb.resize((400, 300)), "JPEG", quality=90),
        "webp": _encoded(rgb, "WEBP"),
        "bmp-gray": _encoded(rgb.convert("L"), "BMP"),
        "png-16bit": _encoded(deep, "PNG"),
    }


@pytest.mark.parametrize("kind", sorted(_variety()))
def test_pixels_are_the_ones_the_service_decodes(kind):
    data = _variety()[kind]
    served = decode_image(data, ImageSpec(32, 32, MEAN, STD), max_pixels=10**7)  # (3, 32, 32)
    pixels = decode_pixels(data, 32, 32)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == np.uint8
    mean, std = np.asarray(MEAN)[:, None, None], np.asarray(STD)[:, None, None]
    np.testing.assert_allclose((pixels / 255.0 - mean) / std, served, atol=1e-5)


@pytest.fixture
def folder(tmp_path):
    root = write_image_folder(tmp_path / "data", n_train=8, n_val=3)
    (root / "train" / "circle" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "train" / "square" / "gone.png").symlink_to(tmp_path / "missing.png")
    (root / "train" / "square" / ".DS_Store").write_bytes(b"\0")  # hidden: ignored
    return root


def test_classes_come_from_folder_names_and_bad_files_are_listed(folder):
    data = load_image_folder(folder)
    assert data.train.classes == ("circle", "square", "stripes") and len(data.train) == 24
    assert data.train.images.shape == (24, 3, 32, 32) and len(data.val) == 9
    assert not data.val_from_train
    reasons = {s.path.removeprefix(str(folder) + "/"): s.reason for s in data.skipped}
    assert reasons.keys() == {"train/circle/corrupt.png", "train/square/gone.png"}
    assert "not a decodable" in reasons["train/circle/corrupt.png"]
    assert reasons["train/square/gone.png"].startswith("unreadable")
    report = json.loads(folder_report(data, folder, 32))
    assert report["train"] == {"circle": 8, "square": 8, "stripes": 8}
    assert [s["path"] for s in report["skipped"]] == sorted(reasons)


def test_labels_follow_the_folder_each_image_came_from(folder):
    data = load_image_folder(folder)
    first_circle = np.asarray(Image.open(folder / "train" / "circle" / "0000.png").convert("RGB"))
    pixels = first_circle.transpose(2, 0, 1)
    rows = [i for i in range(len(data.train)) if np.array_equal(data.train.images[i], pixels)]
    assert len(rows) == 1 and data.train.classes[int(data.train.labels[rows[0]])] == "circle"


def test_without_val_a_seeded_share_of_each_class_is_held_out(tmp_path):
    root = write_image_folder(tmp_path / "d", n_train=10, n_val=None)
    a, b = load_image_folder(root, seed=3), load_image_folder(root, seed=3)
    assert a.val_from_train and len(a.train) + len(a.val) == 30
    assert np.bincount(a.val.labels.numpy()).tolist() == [2, 2, 2]  # 20 % of 10 per class
    assert (a.val.images == b.val.images).all()
    other = load_image_folder(root, seed=4)
    assert not (other.val.images == a.val.images).all()
    # The held-out images are not trained on.
    train_rows = {bytes(x.numpy()) for x in a.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in a.val.images)


def test_images_are_resized_to_the_requested_input_size(folder):
    assert load_split("imagefolder", "test", folder, image_size=16).images.shape[1:] == (3, 16, 16)


def test_a_single_class_is_refused(tmp_path):
    root = write_image_folder(tmp_path / "d", classes=("only",), n_train=4, n_val=None)
    with pytest.raises(ImageFolderError, match="at least 2 class folders, found only 'only'"):
        load_image_folder(root)


def test_a_class_without_a_readable_image_is_refused(folder):
    empty = folder / "train" / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no image here")
    with pytest.raises(ImageFolderError, match=r"\['empty'\] hold no readable image"):
        load_image_folder(folder)


def test_a_val_class_unknown_to_train_is_refused(folder):
    (folder / "val" / "triangle").mkdir()
    with pytest.raises(ImageFolderError, match="triangle"):
        load_image_folder(folder)
