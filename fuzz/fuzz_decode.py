"""Fuzz target: untrusted bytes → `load_image` → `to_array`; only UnreadableImageError may escape.

Any other exception (or a crash of a decoder) is a bug: it would be a 500 in the web server
or a dead decode worker in training. Run for a bounded time, as CI does:

    .venv/bin/python fuzz/fuzz_decode.py -max_total_time=60 -rss_limit_mb=2048

Without a corpus folder argument, a seed corpus of small valid images of every supported
format (and a few near-misses) is written to a temporary folder and used.
"""

from __future__ import annotations

import io
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

# Pillow loads its format plugins lazily; import them here so their parsers are instrumented
# (coverage-guided) too. numpy and torch are left out: they only slow the fuzzer down.
with atheris.instrument_imports(include=["PIL", "imgsim"]):
    from PIL import (
        BmpImagePlugin,  # noqa: F401
        GifImagePlugin,  # noqa: F401
        Image,
        ImageOps,  # noqa: F401
        JpegImagePlugin,  # noqa: F401
        MpoImagePlugin,  # noqa: F401
        PngImagePlugin,  # noqa: F401
        TiffImagePlugin,  # noqa: F401
        WebPImagePlugin,  # noqa: F401
    )

    from imgsim.core.errors import UnreadableImageError
    from imgsim.images.data import load_image, to_array

# Small on purpose: a few-byte header may declare any size up to this, and decoding 40 M
# pixels per input (the server's limit) would leave the fuzzer a handful of runs a second.
MAX_PIXELS = 1_000_000
SIZE = 32  # the tiny model's input side; any size exercises the same resize path


def test_one_input(data: bytes) -> None:
    """The property: decode → preprocess either works or says UnreadableImageError."""
    try:
        image = load_image(data, MAX_PIXELS, draft_size=SIZE)
    except UnreadableImageError:
        return
    array = to_array(image, SIZE)
    assert array.shape == (3, SIZE, SIZE) and array.dtype.name == "uint8", array.shape


def seed_images() -> dict[str, bytes]:
    """One small image per supported format and mode, the fuzzer's starting points."""
    rgb = Image.linear_gradient("L").resize((16, 12)).convert("RGB")
    cases = {
        "rgb.jpg": (rgb, "JPEG", {}),
        "cmyk.jpg": (rgb.convert("CMYK"), "JPEG", {}),
        "rgba.png": (rgb.convert("RGBA"), "PNG", {}),
        "palette.png": (rgb.convert("P"), "PNG", {"transparency": 0}),
        "grey16.png": (rgb.convert("L").convert("I;16"), "PNG", {}),
        "rgb.webp": (rgb, "WEBP", {}),
        "rgb.bmp": (rgb, "BMP", {}),
        "anim.gif": (rgb.convert("P"), "GIF", {"save_all": True, "append_images": [rgb]}),
        "rgb.tif": (rgb, "TIFF", {"compression": "tiff_deflate"}),
        "rgb.heic": (rgb, "HEIF", {}),  # pillow-heif, registered by imgsim.images.data
        "rgba.avif": (rgb.convert("RGBA"), "AVIF", {}),
    }
    seeds = {}
    for name, (image, fmt, params) in cases.items():
        buffer = io.BytesIO()
        image.save(buffer, fmt, **params)
        seeds[name] = buffer.getvalue()
    seeds["truncated.png"] = seeds["rgba.png"][:-20]
    return seeds


def main(argv: list[str]) -> None:
    # Pillow warns about every corrupt EXIF block it meets: noise here, not findings.
    warnings.simplefilter("ignore", UserWarning)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="imgsim-fuzz-decode-"))
        for name, data in seed_images().items():
            (corpus / name).write_bytes(data)
        argv = [*argv, str(corpus)]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
