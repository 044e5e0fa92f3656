"""Tests for mmcore.images.load_image against a crafted corpus of good and bad uploads.

Every file is generated here (in memory or under tmp_path); nothing is downloaded.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmcore.images import MAX_SIDE, MIN_SIDE, load_image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# --- corpus helpers -------------------------------------------------------------


def _encode(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A ~100-byte valid-looking PNG whose header claims width x height pixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    idat = zlib.compress(b"\x00" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def _assert_rgb(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size == size
    arr = np.asarray(img)
    assert arr.dtype == np.uint8
    assert arr.shape == (size[1], size[0], 3)
    return arr


def _close(pixel, expected, tol: int = 12) -> bool:
    return all(
        abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected, strict=True)
    )


# --- decompression bombs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "kwargs"),
    [
        (50_000, 50_000, {}),  # Pillow itself raises DecompressionBombError
        (8_000, 8_000, {}),  # 64 MP: under Pillow's limit, over ours (40 MP)
        (10_000, 10_000, {"max_pixels": 200_000_000}),  # Pillow's warning range
        (100, 100, {"max_pixels": 5_000}),  # override passed by a settings module
    ],
)
def test_bomb_is_refused_fast_without_decoding(width, height, kwargs):
    data = _png_declaring(width, height)
    assert len(data) < 1_000
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"too large|more than the limit"):
        load_image(data, **kwargs)
    assert time.perf_counter() - start < 1.0


def test_bomb_check_leaves_global_state_alone():
    pixels_before, filters_before = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    with pytest.raises(ValueError, match="decompression bomb"):
        load_image(_png_declaring(50_000, 50_000))
    assert pixels_before == Image.MAX_IMAGE_PIXELS
    assert warnings.filters == filters_before


# --- unreadable input -----------------------------------------------------------


def test_truncated_jpeg(tmp_path: Path):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    data = _encode(noise, "JPEG", quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_image(path)


def test_text_file_renamed_png(tmp_path: Path):
    path = tmp_path / "notes.png"
    path.write_text("this is my homework, not a picture\n")
    with pytest.raises(ValueError, match=r"not an image Pillow can read \(PNG, JPEG"):
        load_image(str(path))


@pytest.mark.parametrize("source", [b"", bytearray()])
def test_empty_bytes(source):
    with pytest.raises(ValueError, match=r"empty \(0 bytes\)"):
        load_image(source)


def test_empty_file(tmp_path: Path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty \(0 bytes\)"):
        load_image(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ValueError, match="File not found"):
        load_image(tmp_path / "nope.png")


@pytest.mark.parametrize(("source", "match"), [(None, "No image"), (42, "int")])
def test_wrong_source_type(source, match):
    with pytest.raises(ValueError, match=match):
        load_image(source)


# --- source kinds ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["str", "path", "bytes", "bytesio", "fileobj", "pil"])
def test_every_source_kind(kind, tmp_path: Path):
    original = Image.new("RGB", (40, 30), RED)
    data = _encode(original)
    path = tmp_path / "red.png"
    path.write_bytes(data)
    if kind == "fileobj":
        with path.open("rb") as fh:
            img = load_image(fh)
    else:
        source = {
            "str": str(path),
            "path": path,
            "bytes": data,
            "bytesio": io.BytesIO(data),
            "pil": original,
        }[kind]
        img = load_image(source)
    arr = _assert_rgb(img, (40, 30))
    assert (arr == RED).all()


# --- colour modes ----------------------------------------------------------------


def test_rgba_transparent_becomes_white():
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 16, 32))  # left half fully transparent black
    img = load_image(_encode(rgba))
    arr = _assert_rgb(img, (32, 32))
    assert tuple(arr[5, 2]) == WHITE
    assert tuple(arr[5, 30]) == RED
    assert rgba.mode == "RGBA"  # the caller's image is not modified


def test_la_transparent_becomes_white():
    la = Image.new("LA", (32, 32), (0, 0))
    img = load_image(_encode(la))
    assert (_assert_rgb(img, (32, 32)) == 255).all()


def test_palette_with_transparency_becomes_white():
    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.paste(1, (16, 0, 32, 32))  # right half red, left half index 0
    data = _encode(pal, transparency=0)  # index 0 (black) is transparent
    assert Image.open(io.BytesIO(data)).mode == "P"
    arr = _assert_rgb(load_image(data), (32, 32))
    assert tuple(arr[5, 2]) == WHITE
    assert tuple(arr[5, 30]) == RED


def test_palette_without_transparency():
    pal = Image.new("P", (32, 32), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    arr = _assert_rgb(load_image(_encode(pal)), (32, 32))
    assert (arr == BLUE).all()


@pytest.mark.parametrize("fmt", ["JPEG", None])
def test_cmyk(fmt):
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    source = _encode(cmyk, fmt) if fmt else cmyk
    arr = _assert_rgb(load_image(source), (32, 32))
    assert _close(arr[16, 16], RED, tol=30)


@pytest.mark.parametrize(("mode", "value"), [("1", 1), ("1", 0), ("L", 128)])
def test_bilevel_and_grey(mode, value):
    img = load_image(_encode(Image.new(mode, (32, 32), value)))
    arr = _assert_rgb(img, (32, 32))
    expected = 255 * value if mode == "1" else value
    assert (arr == expected).all()


def _gradient16() -> np.ndarray:
    return np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: Image.fromarray(a), id="I;16"),
        pytest.param(
            lambda a: Image.frombytes("I;16B", (64, 64), a.astype(">u2").tobytes()),
            id="I;16B",
        ),
        pytest.param(lambda a: Image.fromarray(a.astype(np.int32)), id="I"),
        pytest.param(
            lambda a: Image.open(io.BytesIO(_encode(Image.fromarray(a)))),
            id="16-bit-png",
        ),
        pytest.param(lambda a: Image.fromarray((a / 65535).astype(np.float32)), id="F"),
    ],
)
def test_high_bit_depth_gradient_is_spread_over_0_255(make):
    src = make(_gradient16())
    assert src.mode in {"I;16", "I;16B", "I", "F"}
    arr = _assert_rgb(load_image(src), (64, 64))
    grey = arr[:, :, 0]
    assert grey.min() == 0
    assert grey.max() == 255
    assert len(np.unique(grey)) > 200  # a real ramp, not everything clipped to 255
    assert 100 < grey.mean() < 155


# --- animation and orientation -------------------------------------------------


@pytest.mark.parametrize(("fmt", "params"), [("GIF", {}), ("WEBP", {"lossless": True})])
def test_animated_uses_first_frame(fmt, params):
    frames = [Image.new("RGB", (32, 32), c) for c in (RED, GREEN, BLUE)]
    data = _encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **params
    )
    opened = Image.open(io.BytesIO(data))
    assert getattr(opened, "n_frames", 1) == 3
    opened.seek(2)  # even if the caller left it on the last frame
    for source in (data, opened):
        arr = _assert_rgb(load_image(source), (32, 32))
        assert _close(arr[16, 16], RED)


def test_exif_orientation_6_swaps_width_and_height():
    photo = Image.new("RGB", (60, 40), BLUE)
    photo.paste(RED, (0, 0, 30, 40))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = _encode(photo, "JPEG", exif=exif.tobytes(), quality=95)
    arr = _assert_rgb(load_image(data), (40, 60))
    assert _close(arr[5, 20], RED, tol=30)  # stored left edge is now the top
    assert _close(arr[55, 20], BLUE, tol=30)


# --- geometry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (np.zeros((0, 10, 3), np.uint8), r"no pixels \(10x0\)"),
        (Image.new("RGB", (8, 8)), rf"only 8x8 pixels.*at least {MIN_SIDE}"),
        (Image.new("RGB", (1, 400)), r"1x400 pixels"),
        (Image.new("RGB", (400, 16)), r"400x16 pixels, an aspect ratio above 20:1"),
    ],
    ids=["zero-px", "tiny", "1x400", "extreme-aspect"],
)
def test_bad_geometry(source, match):
    with pytest.raises(ValueError, match=match):
        load_image(source)


@pytest.mark.parametrize(
    ("size", "kwargs", "expected"),
    [
        ((3000, 2000), {}, (MAX_SIDE, 683)),
        ((2000, 3000), {}, (683, MAX_SIDE)),
        ((3000, 2000), {"max_side": 300}, (300, 200)),
        ((500, 400), {}, (500, 400)),  # small enough: untouched
    ],
)
def test_downscale_keeps_aspect(size, kwargs, expected):
    data = _encode(Image.new("RGB", size, GREEN), "JPEG")
    arr = _assert_rgb(load_image(data, **kwargs), expected)
    assert _close(arr[expected[1] // 2, expected[0] // 2], GREEN)


# --- numpy input -----------------------------------------------------------------


def test_numpy_float_array():
    arr = np.zeros((32, 48, 3), np.float64)
    arr[..., 0] = np.linspace(0.0, 1.0, 48)
    out = _assert_rgb(load_image(arr), (48, 32))
    assert out[0, 0, 0] == 0
    assert out[0, -1, 0] == 255
    assert (out[..., 1:] == 0).all()


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.full((20, 30), 77, np.uint8), (77, 77, 77)),
        (np.full((20, 30, 1), 77, np.uint8), (77, 77, 77)),
        (np.full((20, 30, 3), 200, np.uint8), (200, 200, 200)),
        (np.zeros((20, 30, 4), np.uint8), WHITE),  # transparent -> white
        (np.ones((20, 30), bool), WHITE),
    ],
    ids=["HxW", "HxWx1", "HxWx3", "HxWx4", "bool"],
)
def test_numpy_shapes(arr, expected):
    out = _assert_rgb(load_image(arr), (30, 20))
    assert tuple(out[10, 15]) == expected


@pytest.mark.parametrize(
    ("arr", "match"),
    [
        (np.full((20, 30, 3), 2.0), r"float .* \[0, 1\]"),
        (np.full((20, 30, 3), np.nan), r"finite"),
        (np.full((20, 30, 3), 300, np.int32), r"0\.\.255"),
        (np.zeros((20, 30, 2), np.uint8), r"HxW, HxWx3 or HxWx4"),
        (np.zeros((2, 20, 30, 3), np.uint8), r"HxW, HxWx3 or HxWx4"),
    ],
)
def test_bad_numpy_arrays(arr, match):
    with pytest.raises(ValueError, match=match):
        load_image(arr)
