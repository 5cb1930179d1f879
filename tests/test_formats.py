"""HEIC/HEIF and AVIF images, and very large images decoded at reduced size (issue #24)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgsim.core.errors import UnreadableImageError
from imgsim.images.data import (
    DEFAULT_MAX_PIXELS,
    decode_file,
    decode_limits,
    decoded_bytes,
    is_image_name,
    load_image,
    probe_file,
    scan_images,
    set_decode_limits,
)

RED = (220, 20, 20)


@pytest.fixture(autouse=True)
def restore_limits() -> Iterator[None]:
    before = decode_limits()
    yield
    set_decode_limits(*before)


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def half_red_half_blue(size: tuple[int, int] = (96, 64)) -> Image.Image:
    im = Image.new("RGB", size, RED)
    ImageDraw.Draw(im).rectangle((size[0] // 2, 0, size[0], size[1]), fill=(20, 20, 220))
    return im


# --- HEIC/HEIF and AVIF -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.heic", "a.HEIC", "a.heif", "a.avif"])
def test_heif_and_avif_names_are_images(name: str) -> None:
    assert is_image_name(name)


@pytest.mark.parametrize(
    ("fmt", "suffix"), [("HEIF", ".heic"), ("HEIF", ".heif"), ("AVIF", ".avif")]
)
def test_heif_and_avif_files_are_found_and_decoded(tmp_path: Path, fmt: str, suffix: str) -> None:
    (tmp_path / "shirt").mkdir()
    path = tmp_path / "shirt" / f"iphone{suffix}"
    path.write_bytes(encode(half_red_half_blue(), fmt, quality=90))
    assert [r.name for r in scan_images(tmp_path)] == [f"shirt/iphone{suffix}"]
    assert probe_file(path) is None
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (96, 64)
    arr = decode_file(path, 16)
    assert arr.shape == (3, 16, 16)
    left, right = arr[:, 8, 2].astype(int), arr[:, 8, 13].astype(int)
    assert np.abs(left - RED).max() <= 30 and right[2] > 180 > right[0]  # lossy, but the colours


def test_heif_with_alpha_is_on_white() -> None:
    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    out = load_image(encode(im, "HEIF", quality=90))
    assert (np.asarray(out).astype(int) >= 230).all()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_truncated_heif_and_avif_are_unreadable_not_a_crash(fmt: str) -> None:
    data = encode(half_red_half_blue(), fmt, quality=90)
    for cut in (data[:12], data[: len(data) // 2], b"\0\0\0\x18ftypheic" + b"\0" * 40):
        with pytest.raises(UnreadableImageError, match="not a readable image"):
            load_image(cut)


def test_heif_and_avif_budget_counts_the_decoder_planes() -> None:
    # libheif and libavif hold YUV planes next to Pillow's RGB copy while converting.
    assert decoded_bytes((100, 10), "RGB", "HEIF") == decoded_bytes((100, 10), "RGB") + 3000
    data = encode(half_red_half_blue((400, 300)), "AVIF")
    with pytest.raises(UnreadableImageError, match="too large to decode: 400x300"):
        load_image(data, max_bytes=400 * 300 * 4)
    assert load_image(data, max_bytes=400 * 300 * 7).size == (400, 300)


# --- very large images ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_art_16k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A legitimate 16,000 × 12,000 clip-art JPEG (2 MB): a black square on white."""
    im = Image.new("L", (16_000, 12_000), 255)
    ImageDraw.Draw(im).rectangle((4000, 3000, 12_000, 9000), fill=0)
    path = tmp_path_factory.mktemp("big") / "clipart_001.jpg"
    im.save(path, quality=75)
    return path


def test_a_16000_px_jpeg_is_decoded_at_reduced_size(clip_art_16k: Path) -> None:
    # 192 M pixels: over the old 40 M limit and Pillow's own 179 M. Decoded at 1/8 scale it
    # takes 2000 x 1500 bytes: far under the budget, which is counted at that size.
    assert probe_file(clip_art_16k) is None
    set_decode_limits(max_bytes=2000 * 1500)
    im = load_image(clip_art_16k, draft_size=224)
    assert im.size == (500, 500)  # 2000 x 1500, box-reduced to about twice 224 per axis
    with pytest.raises(UnreadableImageError, match="too large to decode: 2000x1500"):
        load_image(clip_art_16k, draft_size=224, max_bytes=2000 * 1500 - 1)
    arr = decode_file(clip_art_16k, 32)
    assert arr[:, 16, 16].max() < 30 and arr[:, 1, 1].min() > 225  # the square, the margin


def test_a_16000_px_jpeg_decoded_at_full_size_is_refused_by_memory(clip_art_16k: Path) -> None:
    # No reduced size asked for: 192 MB of pixels, over the 160 MB budget, before decoding.
    with pytest.raises(UnreadableImageError, match="too large to decode: 16000x12000"):
        load_image(clip_art_16k)


def png_declaring(width: int, height: int) -> bytes:
    """A few-KB RGB PNG whose header declares width × height (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1_000_000, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header is patched to declare width × height."""
    data = bytearray(encode(Image.new("L", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_a_png_bomb_within_the_pixel_ceiling_is_refused_by_memory() -> None:
    # 16,000² RGB: a PNG has no reduced decode, so it would take 1 GB; refused from the header.
    with pytest.raises(UnreadableImageError, match="too large to decode: 16000x16000"):
        load_image(png_declaring(16_000, 16_000), draft_size=224)


@pytest.mark.parametrize("make", [png_declaring, jpeg_declaring])
def test_bombs_over_the_pixel_ceiling_are_refused_before_decoding(
    make: Callable[[int, int], bytes],
) -> None:
    side = 60_000
    assert side * side > DEFAULT_MAX_PIXELS
    with pytest.raises(UnreadableImageError, match="too large"):
        load_image(make(side, side), draft_size=224)
    with Image.open(io.BytesIO(make(16, 16))) as im:
        assert im.size == (16, 16)  # the same bytes, undamaged, declare what they hold


def test_the_server_default_is_the_same_ceiling() -> None:
    from imgsim.core.config import SearchConfig

    assert SearchConfig().max_image_pixels == DEFAULT_MAX_PIXELS


# An AVIF header libavif cannot parse: Pillow raised RuntimeError ("Failed to decode image: Not
# implemented"), found by fuzz/fuzz_decode.py in CI.
_BAD_AVIF = (
    "AAAAIGZ0eXBhdmlmAAAAAGF2aWZtaWYxbWlhZk1BMUIAAADrbWV0YQAAAAAAAAAhaGRscgAAAAAAAAAAcGljdAAA"
    "AAAAAAAAAAAAAAAAAAAOcGl0bQAAAAAAAQAAAB5pbG9jAAAAAEQAAAEAAQAAAAEAAAETAAAANAAAAChpaW5mAAAA"
    "AAABAAAAGmluZmUCAAAAAAEAAGF2MDFDb2xvcgAAAABqaXBycAAAAEtpcGNvAAAAFGlzcGUAAAAAAAAAEAAAAAwA"
    "AAAQcGl4aQAAAAADCAhJSQgAAAAMYXYxQ4EADAAAAAATY29scm5jbHgAAQANAAaAAAAAF2lwbWEAAAAAAAAAAQAB"
    "BAECgwQAAAA8bWRhdBIACgkYDP7aICGg0IAyJRTHh4ZlAgggnlVAAADEnclxHOCl1ExWO7D38GsipH32cYyO8IA="
)


def test_an_avif_libavif_cannot_parse_is_unreadable_not_a_crash() -> None:
    import base64

    with pytest.raises(UnreadableImageError, match="not a readable image"):
        load_image(base64.b64decode(_BAD_AVIF))
