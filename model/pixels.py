"""Decoded image → the RGB picture a model sees: one set of steps for training and serving.

A model trained on an image folder must see at training time exactly the pixels it is served,
so the service's decoder (service/images.py) and the folder reader (training/data/) both use
these: 16-bit and float images rescaled to 8 bits, transparency shown on white, a centre crop
to the target aspect ratio and a bilinear resize. Pure Pillow and numpy; no file access.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
BACKGROUND = (255, 255, 255, 255)  # transparent pixels are shown on white, as a viewer would


def to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded mode → RGB (8 bits per channel)."""
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        image = to_8bit_gray(image)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def to_8bit_gray(image: Image.Image) -> Image.Image:
    """16-bit or float gray → 8-bit gray, the range scaled rather than clipped."""
    # Pillow's convert() clips 16-bit samples at 255 (a white image); scale the range instead.
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and pixels.max(initial=0) > 255):
        pixels = pixels / 257.0
    elif image.mode == "F" and pixels.max(initial=0) <= 1.0:
        pixels = pixels * 255.0  # float images are usually on the 0..1 scale
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), mode="L")


def fit_to(image: Image.Image, height: int, width: int) -> Image.Image:
    """Centre-crop to the target aspect ratio, then resize to (width, height), no distortion."""
    if image.size == (width, height):
        return image
    w, h = image.size
    scale = min(w / width, h / height)
    left, top = (w - width * scale) / 2, (h - height * scale) / 2
    box = (left, top, left + width * scale, top + height * scale)
    return image.resize((width, height), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
