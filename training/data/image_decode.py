"""Image file bytes → the uint8 (3, H, W) pixels the service would feed the model.

The steps are the service's (service/images.py), so a folder-trained model sees at training
time exactly the pixels it is served: formats PNG, JPEG, WebP, BMP and GIF (first frame), EXIF
orientation, 16-bit and float images rescaled to 8 bits, transparency shown on white, a centre
crop to the target aspect ratio and a bilinear resize. Normalisation is left to the batches
(the statistics come from the training images).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
ACCEPTED = "PNG, JPEG, WebP, BMP or GIF"
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
BACKGROUND = (255, 255, 255, 255)


def decode_pixels(data: bytes, height: int, width: int) -> np.ndarray:
    """uint8 (3, height, width); raises (OSError, ValueError, Pillow's errors) on bad bytes."""
    with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        # JPEG only: decode at a reduced DCT scale that still covers the target, as served.
        image.draft("RGB", (max(height, width), max(height, width)))
        image.load()
        rgb = _to_rgb(ImageOps.exif_transpose(image))
        fitted = _fit(rgb, height, width)
    return np.ascontiguousarray(np.asarray(fitted, dtype=np.uint8).transpose(2, 0, 1))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        image = _to_8bit_gray(image)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    # convert() clips 16-bit samples at 255 (a white image): scale the range instead.
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and pixels.max(initial=0) > 255):
        pixels = pixels / 257.0
    elif image.mode == "F" and pixels.max(initial=0) <= 1.0:
        pixels = pixels * 255.0
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), mode="L")


def _fit(image: Image.Image, height: int, width: int) -> Image.Image:
    """Centre-crop to the target aspect ratio, then resize (no distortion)."""
    if image.size == (width, height):
        return image
    w, h = image.size
    scale = min(w / width, h / height)
    left, top = (w - width * scale) / 2, (h - height * scale) / 2
    box = (left, top, left + width * scale, top + height * scale)
    return image.resize((width, height), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
