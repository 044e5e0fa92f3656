"""Safe loading of user-supplied images.

`load_image` is the single entry point for every upload the app receives
(path, bytes, file object, PIL image or numpy array). It always returns an
RGB uint8 PIL image within the size limits below, or raises `ValueError`
with a message a workshop participant can act on.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_SIDE = 1024  # longest side after downscaling
MAX_INPUT_PIXELS = 40_000_000  # refuse larger images before decoding them
MIN_SIDE = 16  # smaller images carry too little signal for a ViT patch grid
MAX_ASPECT = 20.0  # longer/shorter side; beyond this a resize to 224 is garbage

ACCEPTED = "PNG, JPEG, WebP, GIF, BMP are accepted"

# Everything an upload widget or a caller might hand us.
ImageSource = (
    str | os.PathLike[str] | bytes | bytearray | BinaryIO | Image.Image | np.ndarray
)


def load_image(
    source: ImageSource, *, max_side: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Decode `source` into an RGB uint8 PIL image no larger than `max_side`.

    `max_side` / `max_pixels` default to `MAX_SIDE` / `MAX_INPUT_PIXELS`.
    Pillow's own bomb limit (`Image.MAX_IMAGE_PIXELS`) still applies on top.
    Raises `ValueError` for anything that is not a usable image.
    """
    max_side = MAX_SIDE if max_side is None else max_side
    max_pixels = MAX_INPUT_PIXELS if max_pixels is None else max_pixels

    if source is None:
        raise ValueError(f"No image was provided. Please upload an image ({ACCEPTED}).")
    if isinstance(source, np.ndarray):
        img = _from_array(source, max_pixels)
    elif isinstance(source, Image.Image):
        img = _decode(source, max_pixels, max_side)
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise ValueError("The upload is empty (0 bytes). Please choose an image.")
        img = _open_and_decode(io.BytesIO(source), max_pixels, max_side)
    elif isinstance(source, (str, os.PathLike)):
        if os.path.isfile(source) and os.path.getsize(source) == 0:
            raise ValueError(f"The file {os.fspath(source)!r} is empty (0 bytes).")
        img = _open_and_decode(source, max_pixels, max_side)
    elif hasattr(source, "read"):
        img = _open_and_decode(source, max_pixels, max_side)
    else:
        raise ValueError(
            f"Cannot read an image from a {type(source).__name__}; expected a file "
            "path, bytes, a file object, a PIL image or a numpy array."
        )

    img = _to_rgb(img)
    return _downscale(img, max_side)


def _open_and_decode(
    source: str | os.PathLike[str] | BinaryIO, max_pixels: int, max_side: int
) -> Image.Image:
    # Pillow raises DecompressionBombError from open() itself when the header
    # declares > 2 * MAX_IMAGE_PIXELS, and only warns above MAX_IMAGE_PIXELS;
    # turning that warning into an error makes both cases refusals.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                return _decode(img, max_pixels, max_side)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(
            "This image is far too large to decode safely (limit "
            f"{max_pixels:,} pixels); it may be a 'decompression bomb'. "
            "Please upload a smaller image."
        ) from None
    except UnidentifiedImageError:
        raise ValueError(
            f"This file is not an image Pillow can read ({ACCEPTED})."
        ) from None
    except FileNotFoundError:
        raise ValueError(f"File not found: {os.fspath(source)!r}.") from None
    except OSError as exc:  # directory, permissions, unseekable stream, ...
        raise ValueError(f"Could not read the upload: {exc}.") from None


def _decode(img: Image.Image, max_pixels: int, max_side: int) -> Image.Image:
    """Check the declared size, then decode frame 0 and apply EXIF rotation."""
    # img.size comes from the header: checking it here costs nothing, whereas
    # load() would allocate width * height pixels.
    _check_size(*img.size, max_pixels)
    if img.format == "JPEG":
        # Let libjpeg decode at a reduced scale when we will downscale anyway.
        img.draft("RGB", (max_side, max_side))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.seek(0)  # animated GIF/WebP: use the first frame
            img.load()
            # Phone photos store rotation as a tag; apply it so "up" is up.
            # exif_transpose also returns a copy, so the caller's image is untouched.
            return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(
            f"This image file is truncated or corrupted ({exc}). "
            "Please re-save or re-export it and try again."
        ) from None


def _from_array(arr: np.ndarray, max_pixels: int) -> Image.Image:
    """Build a PIL image from an HxW, HxWx1, HxWx3 or HxWx4 array."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(
            f"An image array must have shape HxW, HxWx3 or HxWx4; got {arr.shape}."
        )
    _check_size(arr.shape[1], arr.shape[0], max_pixels)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise ValueError("A float image array must hold finite values in [0, 1].")
        arr = np.round(arr * 255.0).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError("An integer image array must hold values in 0..255.")
        arr = arr.astype(np.uint8)
    else:
        raise ValueError(f"Unsupported array dtype {arr.dtype}; use uint8 or float.")
    return Image.fromarray(np.ascontiguousarray(arr))


def _check_size(width: int, height: int, max_pixels: int) -> None:
    """Refuse empty, oversized, tiny or extremely elongated images."""
    if width == 0 or height == 0:
        raise ValueError(f"The image has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise ValueError(
            f"The image is {width}x{height} = {width * height:,} pixels, more than the "
            f"limit of {max_pixels:,}. Please upload a smaller image."
        )
    if min(width, height) < MIN_SIDE:
        raise ValueError(
            f"The image is only {width}x{height} pixels; each side must be at least "
            f"{MIN_SIDE} pixels."
        )
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ValueError(
            f"The image is {width}x{height} pixels, an aspect ratio above "
            f"{MAX_ASPECT:g}:1. Please crop it to a less extreme shape."
        )


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, putting transparency on white."""
    if img.mode.startswith("I") or img.mode == "F":
        # Pillow's own I;16 -> L conversion clips at 255, turning almost every
        # 16-bit pixel white; rescale the real value range instead.
        img = _rescale_to_l(img)
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    try:
        return img.convert("RGB")  # CMYK, P, L, 1, YCbCr, ...
    except ValueError:
        raise ValueError(f"Colour mode {img.mode!r} is not supported.") from None


def _rescale_to_l(img: Image.Image) -> Image.Image:
    """Map a 16/32-bit integer or float image onto 8-bit grayscale."""
    arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
    lo, hi = min(float(arr.min()), 0.0), float(arr.max())
    if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        hi = 1.0  # float images conventionally live in [0, 1]
    elif lo >= 0.0 and hi <= 255.0:
        hi = 255.0  # values already fit 8 bits; keep them rather than brighten
    scaled = (arr - lo) / ((hi - lo) or 1.0) * 255.0
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))


def _downscale(img: Image.Image, max_side: int) -> Image.Image:
    """Shrink so the longest side is at most `max_side`, keeping the aspect ratio."""
    width, height = img.size
    scale = max_side / max(width, height)
    if scale >= 1.0:
        return img
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(new_size, Image.Resampling.LANCZOS)
