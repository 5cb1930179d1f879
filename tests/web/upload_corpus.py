"""The upload corpus: bad requests the API must refuse with a clear 4xx, and odd valid images.

Everything is generated here, in a few kilobytes each, so the corpus needs no files in the
repository. Used by test_bad_uploads.py, through the Flask test client and a live server.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

import imgsim.images.data  # noqa: F401  (registers pillow-heif, which writes the HEIC case)

# The corpus app's limits: small, so the over-limit cases stay small too.
MAX_IMAGE_BYTES = 256 * 1024
MAX_BATCH_FILES = 4


@dataclass(frozen=True)
class Upload:
    """One POST: files (field, name, bytes), text fields, or a raw body with its Content-Type."""

    files: tuple[tuple[str, str, bytes], ...] = ()
    form: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = None
    path: str = "/search"


@dataclass(frozen=True)
class Bad:
    """An upload and the answer it must get: status and the start of the error message."""

    upload: Upload
    status: int
    message: str


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """Noise over a gradient: compresses like a photo, so a cut file really misses data."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width)[None, :, None]
    arr = ramp + rng.normal(0, 40, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A few-KB, well-formed PNG whose header declares `width`×`height` RGB pixels.

    Its data really is that many zero bytes, deflated (as far as 1 MB of them goes):
    a decoder that trusted the header would try to allocate gigabytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1_000_000, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)


def image_file(data: bytes, name: str = "upload.jpg", field_name: str = "image") -> Upload:
    return Upload(files=((field_name, name, data),))


def bad_uploads() -> dict[str, Bad]:
    """Every bad request we know of, by name: each must get its 4xx and message, fast."""
    jpeg, png = encode(photo(), "JPEG", quality=90), encode(photo(), "PNG")
    ok = image_file(png, "query.png")
    not_multipart = "no image file in the request: send it as multipart/form-data"
    unreadable = "not a readable image"
    return {
        # The request itself.
        "empty body": Bad(Upload(), 400, not_multipart),
        "raw image body": Bad(Upload(body=png, content_type="image/png"), 400, not_multipart),
        "json body": Bad(Upload(body=b'{"image": "x"}', content_type="application/json"), 400,
                         not_multipart),
        "urlencoded body": Bad(Upload(form={"image": "abc"}), 400, not_multipart),
        "multipart without boundary": Bad(
            Upload(body=b"--x\r\n\r\n", content_type="multipart/form-data"), 400, "no image file"
        ),
        "multipart never terminated": Bad(
            Upload(
                body=b'--xyz\r\nContent-Disposition: form-data; name="image"; '
                b'filename="a.png"\r\n\r\n' + png,
                content_type="multipart/form-data; boundary=xyz",
            ),
            400,
            "no image file",
        ),
        "field without a parsable name": Bad(
            Upload(
                body=b'--b\r\nContent-Disposition: form-data; name="\\"\r\n\r\n3.7\r\n--b--\r\n',
                content_type="multipart/form-data; boundary=b",
                path="/search/batch",
            ),
            400,
            "no image files in the request",
        ),
        "wrong field name": Bad(image_file(png, field_name="photo"), 400,
                                "no image file in the request: send it as the multipart field"),
        "no file name": Bad(image_file(png, name=""), 400, "no image selected"),
        "empty file": Bad(image_file(b"", "empty.jpg"), 400, "empty file"),
        # Not images, or not whole ones.
        "text named .jpg": Bad(image_file(b"hello, I am text\n" * 20), 400, unreadable),
        "pdf named .jpg": Bad(image_file(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n"), 400,
                              unreadable),
        "svg": Bad(image_file(b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">'
                              b'<rect width="9" height="9"/></svg>', "a.svg"), 400, unreadable),
        "html named .png": Bad(image_file(b"<html><script>alert(1)</script>", "a.png"), 400,
                               unreadable),
        "ico named .png": Bad(image_file(encode(photo(16, 16), "ICO"), "a.png"), 400, unreadable),
        "eps named .jpg": Bad(image_file(encode(photo(16, 16), "EPS")), 400, unreadable),
        "truncated jpeg": Bad(image_file(jpeg[: len(jpeg) // 2]), 400, unreadable),
        "truncated png": Bad(image_file(png[: len(png) // 2], "a.png"), 400, unreadable),
        "png header only": Bad(image_file(png[:33], "a.png"), 400, unreadable),
        # Too much.
        "decompression bomb 50000x50000": Bad(image_file(png_bomb(), "bomb.png"), 400,
                                             "image too large"),
        # Under the pixel ceiling (a bound on time), but a PNG has no reduced decode: 400 MB.
        "10000x10000 png over the decode budget": Bad(
            image_file(png_bomb(10_000, 10_000), "big.png"), 400, "image too large to decode",
        ),
        "file over the byte limit": Bad(image_file(b"\xff\xd8" + b"\0" * MAX_IMAGE_BYTES), 413,
                                        "image too large: the limit is 0.25 MB"),
        "body far over the limit": Bad(image_file(b"\0" * (4 * MAX_IMAGE_BYTES)), 413,
                                       "image too large"),
        "too many form parts": Bad(
            Upload(files=ok.files, form={f"f{i}": "1" for i in range(1100)}), 413,
            "request too large: at most 1000 form parts",
        ),
        "huge top_k field": Bad(Upload(files=ok.files, form={"top_k": "1" * 300_000}), 400,
                                "top_k must be between 1 and 100, not 11111111111111111111"),
        # Parameters.
        **{
            f"top_k={value!r}": Bad(Upload(files=ok.files, form={"top_k": value}), 400,
                                    "top_k must be")
            for value in ["0", "101", "-1", "abc", "1e3", "10.5", "9" * 5000, "\x00", "\x1e",
                          " ", " 10", "１０", "1_0"]
        },
        **{
            f"threshold={value!r}": Bad(Upload(files=ok.files, form={"threshold": value}), 400,
                                        "threshold must be")
            for value in ["-1", "100.01", "high", "nan", "inf", "infinity", "1e400", "5%", "٥"]
        },
        "top_k given twice": Bad(Upload(files=ok.files, form={"top_k": "10"},
                                        path="/search?top_k=20"), 400,
                                 "top_k was given 2 times; send it once"),
        "threshold given twice": Bad(Upload(files=ok.files, form={"threshold": "10"},
                                            path="/search?threshold=10"), 400,
                                     "threshold was given 2 times"),
        # Batches.
        "batch over the file limit": Bad(
            Upload(files=(("images", "a.png", png),) * (MAX_BATCH_FILES + 1), path="/search/batch"),
            400,
            f"too many images: {MAX_BATCH_FILES + 1} (limit {MAX_BATCH_FILES} per request)",
        ),
        "batch with a truncated image": Bad(
            Upload(files=(("images", "a.png", png), ("images", "b.jpg", jpeg[:500])),
                   path="/search/batch"),
            400,
            "image 2 (b.jpg): not a readable image",
        ),
        "batch without files": Bad(Upload(path="/search/batch"), 400, "no image files"),
    }  # fmt: skip


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return encode(photo(40, 20), "JPEG", exif=exif)


def valid_images() -> dict[str, tuple[str, bytes]]:
    """Unusual but valid images, by name: each must be searched like any other."""
    base = photo()
    frames = [photo(seed=s) for s in range(3)]
    sixteen = Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 257).astype(np.uint16))
    return {
        "16-bit grey png": ("a.png", encode(sixteen, "PNG")),
        "cmyk jpeg": ("a.jpg", encode(base.convert("CMYK"), "JPEG")),
        "grey jpeg": ("a.jpg", encode(base.convert("L"), "JPEG")),
        "progressive jpeg": ("a.jpg", encode(base, "JPEG", progressive=True)),
        "palette png with transparency": ("a.png", encode(base.convert("P"), "PNG",
                                                          transparency=0)),
        "rgba png": ("a.png", encode(base.convert("RGBA"), "PNG")),
        "grey+alpha png": ("a.png", encode(base.convert("LA"), "PNG")),
        "1-bit png": ("a.png", encode(base.convert("1"), "PNG")),
        "1x1 png": ("a.png", encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG")),
        "1x1 jpeg": ("a.jpg", encode(Image.new("RGB", (1, 1), (9, 99, 199)), "JPEG")),
        "very wide 20000x1": ("a.png", encode(photo(20_000, 1), "PNG")),
        "very tall 1x20000": ("a.png", encode(photo(1, 20_000), "PNG")),
        "exif-rotated jpeg": ("a.jpg", exif_rotated_jpeg()),
        "animated gif": ("a.gif", encode(frames[0], "GIF", save_all=True,
                                         append_images=frames[1:])),
        "webp": ("a.webp", encode(base, "WEBP")),
        "webp with alpha": ("a.webp", encode(base.convert("RGBA"), "WEBP")),
        "animated webp": ("a.webp", encode(frames[0], "WEBP", save_all=True,
                                           append_images=frames[1:])),
        "bmp": ("a.bmp", encode(base, "BMP")),
        "tiff": ("a.tif", encode(base, "TIFF", compression="tiff_deflate")),
        "mpo (two-picture jpeg)": ("a.jpg", encode(base, "MPO", save_all=True,
                                                    append_images=[frames[1]])),
        "png named .jpg": ("a.jpg", encode(base, "PNG")),
        "heic (iPhone)": ("a.heic", encode(base, "HEIF")),
        "avif": ("a.avif", encode(base, "AVIF")),
        "markup in the file name": ("<img src=x onerror=alert(1)>.jpg", encode(base, "JPEG")),
        "non-ascii file name": ("Schürze 衬衫 ✓.png", encode(base, "PNG")),
    }  # fmt: skip
