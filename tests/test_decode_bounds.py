"""Decoding within bounds: a byte budget read from the header, reduced decodes, few at once."""

from __future__ import annotations

import io
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgsim.core.errors import UnreadableImageError
from imgsim.images import data
from imgsim.images.data import decode_limits, decoded_bytes, load_image, set_decode_limits, to_array


@pytest.fixture(autouse=True)
def restore_limits() -> Iterator[None]:
    before = decode_limits()
    yield
    set_decode_limits(*before)


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png16(width: int, height: int, channels: int = 1, rows: bytes | None = None) -> bytes:
    """A 16-bit PNG (grey, RGB or RGBA) whose rows are all `rows` (default: zeros)."""
    row = rows if rows is not None else bytes(width * channels * 2)
    raw = b"".join(b"\x00" + row for _ in range(height))
    return png16_header(width, height, channels) + _chunk(b"IDAT", zlib.compress(raw, 9))


def png16_header(width: int, height: int, channels: int = 1) -> bytes:
    """The signature and header of a 16-bit PNG, and no pixels."""
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)


def test_the_budget_counts_pixels_bands_and_bytes_per_sample() -> None:
    assert decoded_bytes((6300, 6300), "I;16") == 6300 * 6300 * 2  # the 77 KB PNG
    assert decoded_bytes((100, 10), "RGB") == 4000  # Pillow pads RGB to 4 bytes a pixel
    assert decoded_bytes((100, 10), "RGBA") == 4000
    assert decoded_bytes((100, 10), "L") == 1000
    assert decoded_bytes((100, 10), "F") == 4000


def test_an_image_over_the_budget_is_refused_from_its_header() -> None:
    # Only the header, no pixels: refused for its size, before any decoding.
    truncated = png16_header(6300, 6300) + _chunk(b"IDAT", b"x\x9c")
    with pytest.raises(UnreadableImageError, match=r"too large to decode: 6300x6300.*76 MB"):
        load_image(truncated, max_bytes=64 * 2**20)
    set_decode_limits(max_bytes=10 * 2**20)
    with pytest.raises(UnreadableImageError, match=r"limit 10 MB"):
        load_image(truncated)


def test_a_large_16_bit_png_decodes_without_full_size_copies() -> None:
    # A grey ramp, so the 16 -> 8 bit scaling shows in the result.
    side = 2400
    ramp = np.linspace(0, 65535, side).astype(">u2").tobytes()
    encoded = png16(side, side, rows=ramp)
    tracemalloc.start()
    try:
        out = load_image(encoded, draft_size=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Before: float64 copies of the full image (3 x 46 MB). Now: a strip at a time.
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB"
    assert out.mode == "RGB" and out.size == (side // 18 + (side % 18 > 0),) * 2
    arr = to_array(out, 64)
    row = arr[0, 32]
    assert row[0] <= 4 and row[-1] >= 251 and (np.diff(row.astype(int)) >= 0).all()


def test_the_reduced_decode_matches_the_full_size_one() -> None:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (700, 1000, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rgba[..., 3] > 60, 255, 0)
    im = Image.fromarray(rgba, "RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the result must come out upright, 700 wide and 1000 high
    buffer = io.BytesIO()
    im.save(buffer, "PNG", exif=exif)
    # The old way: everything at full size, then Pillow's resize (which reduces by 2 as well).
    full = ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue())))
    white = Image.new("RGBA", full.size, (255, 255, 255, 255))
    expected = to_array(Image.alpha_composite(white, full.convert("RGBA")).convert("RGB"), 64)
    out = load_image(buffer.getvalue(), draft_size=64)
    assert out.size[0] < out.size[1]
    got = to_array(out, 64)
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 1.0


def test_16_bit_rgb_and_palette_images_take_the_reduced_path() -> None:
    rgb16 = png16(1200, 800, channels=3, rows=b"\xff\xff\x00\x00\x00\x00" * 1200)
    assert np.asarray(load_image(rgb16, draft_size=32))[5, 5].tolist() == [255, 0, 0]
    palette = Image.new("P", (1500, 900), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    assert np.asarray(load_image(buffer.getvalue(), draft_size=32))[5, 5].tolist() == [10, 200, 30]


def test_concurrent_decodes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    set_decode_limits(concurrent=2)
    running, most = 0, 0
    lock = threading.Lock()
    real = data._to_rgb

    def slow_to_rgb(*args: object) -> Image.Image:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(data, "_to_rgb", slow_to_rgb)
    small = io.BytesIO()
    Image.new("RGB", (8, 8)).save(small, "PNG")
    threads = [threading.Thread(target=load_image, args=(small.getvalue(),)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 2
    with pytest.raises(ValueError):
        set_decode_limits(concurrent=0)
