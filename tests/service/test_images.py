"""Image preprocessing: every common format and mode decodes; hostile bytes give 4xx."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.core import ServiceError
from service.inputs import ImageSpec, decode_image
from tests.service.helpers import CIFAR_PNGS, IMAGE_PREP, encode, png_claiming, reference_input

SPEC = ImageSpec.from_preprocessing(IMAGE_PREP)
MAX_PIXELS = 4_000_000


def decode(data: bytes) -> np.ndarray:
    return decode_image(data, SPEC, MAX_PIXELS)


def gradient(mode: str = "RGB", size=(48, 40)) -> Image.Image:
    w, h = size
    r = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    g = np.tile(np.linspace(0, 255, h, dtype=np.uint8)[:, None], (1, w))
    b = np.full((h, w), 128, np.uint8)
    return Image.fromarray(np.stack([r, g, b], -1)).convert(mode)


def test_a_cifar_png_decodes_to_the_reference_tensor():
    x = decode(CIFAR_PNGS[0].read_bytes())
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x, reference_input(CIFAR_PNGS[0])[0].numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("L", "PNG"), ("LA", "PNG"),
        ("1", "PNG"), ("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "WEBP"),
        ("RGBA", "WEBP"), ("RGB", "BMP"), ("P", "GIF"),
    ],
)  # fmt: skip
def test_common_formats_and_modes_decode(mode, fmt):
    x = decode(encode(gradient(mode), fmt))
    assert x.shape == (3, 32, 32) and np.isfinite(x).all()


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (32, 1))
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    x = decode(encode(image))
    pixels = x[0] * SPEC.std[0] + SPEC.mean[0]  # back to 0..1
    assert pixels.min() == pytest.approx(0, abs=1e-3) and pixels.max() == pytest.approx(1, abs=1e-3)
    assert 0.4 < float(np.median(pixels)) < 0.6  # clipping would make most of it white


def test_transparent_pixels_are_composited_on_white():
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    pixels = decode(encode(clear))[0] * SPEC.std[0] + SPEC.mean[0]
    np.testing.assert_allclose(pixels, 1.0, atol=1e-5)


def test_exif_orientation_is_applied():
    # Top half black, bottom white; orientation 3 (rotate 180°) must flip it.
    image = Image.new("RGB", (32, 32), "white")
    image.paste((0, 0, 0), (0, 0, 32, 16))
    exif = Image.Exif()
    exif[0x0112] = 3
    x = decode(encode(image, "JPEG", exif=exif, quality=95))
    assert x[0, :8].mean() > x[0, -8:].mean()  # the bright half is now on top


def test_gif_first_frame_is_used():
    frames = [Image.new("P", (32, 32), 0), Image.new("P", (32, 32), 1)]
    frames[0].putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    frames[1].putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pixels = decode(data)[0] * SPEC.std[0] + SPEC.mean[0]
    np.testing.assert_allclose(pixels, 0.0, atol=1e-5)  # frame 0 is black


def test_large_images_are_centre_cropped_and_resized():
    image = Image.new("RGB", (300, 100), "red")
    image.paste((0, 0, 255), (0, 0, 80, 100))  # blue on the left, outside the centre crop
    x = decode(encode(image))
    blue = x[2] * SPEC.std[2] + SPEC.mean[2]
    assert x.shape == (3, 32, 32) and blue.max() < 0.05


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"definitely not an image", 400),
        (encode(gradient(), "TIFF"), 400),  # a real image, but not an accepted format
    ],
)
def test_undecodable_bytes_are_400(data, status):
    with pytest.raises(ServiceError) as err:
        decode(data)
    assert err.value.status == status and "PNG" in err.value.message


def test_truncated_image_is_400():
    data = encode(gradient(size=(64, 64)), "PNG")
    with pytest.raises(ServiceError) as err:
        decode(data[: len(data) // 2])
    assert err.value.status == 400 and "truncated" in err.value.message


def test_decompression_bomb_is_413_before_decoding():
    # A blank 1-bit PNG over the pixel limit is a few kB; a forged header is smaller still.
    one_bit = encode(Image.new("1", (3_000, 3_000)), optimize=True)
    for bomb in (one_bit, png_claiming(10**5, 10**5)):
        with pytest.raises(ServiceError) as err:
            decode(bomb)
        assert err.value.status == 413 and "limit" in err.value.message
