"""Image file bytes → the uint8 (3, H, W) pixels the service would feed the model.

The steps are the service's (model/pixels.py, which service/inputs/images.py uses too), so a
folder-trained model sees at training time exactly the pixels it is served: formats PNG, JPEG,
WebP, BMP and GIF (first frame), EXIF orientation, 16-bit and float images rescaled to 8 bits,
transparency shown on white, a centre crop to the target aspect ratio and a bilinear resize.
Normalisation is left to the batches (the statistics come from the training images).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from model.pixels import fit_to, to_rgb

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
ACCEPTED = "PNG, JPEG, WebP, BMP or GIF"


def decode_pixels(data: bytes, height: int, width: int) -> np.ndarray:
    """uint8 (3, height, width); raises (OSError, ValueError, Pillow's errors) on bad bytes."""
    with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        # JPEG only: decode at a reduced DCT scale that still covers the target, as served.
        image.draft("RGB", (max(height, width), max(height, width)))
        image.load()
        rgb = to_rgb(ImageOps.exif_transpose(image))
        fitted = fit_to(rgb, height, width)
    return np.ascontiguousarray(np.asarray(fitted, dtype=np.uint8).transpose(2, 0, 1))
