"""Image bytes → the normalised (3, H, W) float32 array a model was trained on.

Runs in a worker thread (Pillow releases the GIL while decoding). Accepts what browsers and
cameras produce: PNG, JPEG, WebP, BMP and GIF (first frame) in any mode (RGBA, palette,
grayscale, 16-bit, CMYK), EXIF-rotated. Hostile input (bombs, truncation, garbage) becomes a
`ServiceError` with a 4xx status, never a crash.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.pixels import fit_to, to_rgb
from service.core import ServiceError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
ACCEPTED = "PNG, JPEG, WebP, BMP or GIF"


@dataclass(frozen=True)
class ImageSpec:
    """What the model expects, from the checkpoint's `preprocessing` dict."""

    height: int
    width: int
    mean: tuple[float, float, float]  # on the 0..1 scale
    std: tuple[float, float, float]

    @classmethod
    def from_preprocessing(cls, prep: dict) -> ImageSpec:
        height, width = prep["image_size"]
        return cls(int(height), int(width), tuple(prep["mean"]), tuple(prep["std"]))


def decode_image(data: bytes, spec: ImageSpec, max_pixels: int) -> np.ndarray:
    """Decode, orient, convert to RGB, centre-crop to the aspect ratio, resize and normalise.

    Returns a contiguous float32 array of shape (3, H, W).
    """
    if not data:
        raise ServiceError(400, f"the image is empty; send a {ACCEPTED} file")
    image = _open(data)
    with image:
        _check_dimensions(image, max_pixels)
        try:
            rgb = fit_to(to_rgb(_load_oriented(image, spec)), spec.height, spec.width)
        except Image.DecompressionBombError as exc:
            raise ServiceError(413, f"image rejected as a decompression bomb: {exc}") from exc
        except Exception as exc:  # Pillow's decoders raise many types on hostile bytes
            raise ServiceError(
                400,
                f"the image is truncated or corrupt ({type(exc).__name__}); send a complete "
                f"{ACCEPTED} file",
            ) from exc
    return _normalise(rgb, spec)


def _open(data: bytes) -> Image.Image:
    # open() reads only the header: dimensions are known before any pixel is decoded.
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ServiceError(413, f"image rejected as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ServiceError(400, f"not a decodable image; accepted formats: {ACCEPTED}") from exc
    except Exception as exc:
        raise ServiceError(400, f"unreadable image header; accepted formats: {ACCEPTED}") from exc


def _check_dimensions(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ServiceError(400, f"image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ServiceError(
            413, f"image is {width}×{height} = {width * height} pixels; the limit is {max_pixels}"
        )


def _load_oriented(image: Image.Image, spec: ImageSpec) -> Image.Image:
    side = max(spec.height, spec.width)
    # JPEG only: decode at a reduced DCT scale that still covers the target (much less work
    # for camera photos); a no-op for other formats.
    image.draft("RGB", (side, side))
    image.load()  # GIF/WebP animations: open() is positioned on the first frame
    return ImageOps.exif_transpose(image)


def _normalise(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3) on 0..1
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))  # (3, H, W)
