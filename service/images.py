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

from service.errors import ServiceError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
ACCEPTED = "PNG, JPEG, WebP, BMP or GIF"
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
BACKGROUND = (255, 255, 255, 255)  # transparent pixels are shown on white, as a viewer would


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
            rgb = _fit(_to_rgb(_load_oriented(image, spec)), spec)
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


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        image = _to_8bit_gray(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    # Pillow's convert() clips 16-bit samples at 255 (a white image); scale the range instead.
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and pixels.max(initial=0) > 255):
        pixels = pixels / 257.0
    elif image.mode == "F" and pixels.max(initial=0) <= 1.0:
        pixels = pixels * 255.0  # float images are usually on the 0..1 scale
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), mode="L")


def _fit(image: Image.Image, spec: ImageSpec) -> Image.Image:
    """Centre-crop to the target aspect ratio, then resize (no distortion)."""
    target = (spec.width, spec.height)
    if image.size == target:
        return image
    width, height = image.size
    scale = min(width / spec.width, height / spec.height)
    crop_w, crop_h = spec.width * scale, spec.height * scale
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    box = (left, top, left + crop_w, top + crop_h)
    return image.resize(target, Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)


def _normalise(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3) on 0..1
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))  # (3, H, W)
