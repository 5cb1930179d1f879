"""Tests for imgsim.images.data: category names, folder scans, safe decoding, batch decoding."""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsim.core.errors import DatasetError, UnreadableImageError
from imgsim.images.data import (
    IMAGE_EXTENSIONS,
    ImageRecord,
    category_of,
    dataset_stats,
    decode_file,
    is_image_file,
    iter_decoded,
    load_image,
    parse_category,
    require_categories,
    scan_images,
    to_array,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def touch(folder: Path, *names: str) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def noise_image(size: int = 64, seed: int = 0) -> Image.Image:
    # Noise compresses badly, so a file cut in half really misses image data.
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG whose header declares `width`×`height` but holds almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


# --- categories --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("shirt_001.jpg", "shirt"),
        ("shirt-001.jpg", "shirt"),
        ("shirt_1.jpg", "shirt"),
        ("long_sleeve_shirt_003.jpg", "long_sleeve_shirt"),
        ("long-sleeve-shirt-003.jpg", "long-sleeve-shirt"),
        ("Shirt_001.PNG", "shirt"),
        ("SHIRT_001.jpg", "shirt"),
        ("ankle_boot_00012.png", "ankle_boot"),
        ("shirt_001_front.jpg", "shirt"),
        ("summer_1am.jpg", None),  # 1am is no number: not category "summer"
        ("summer_1am_003.jpg", "summer_1am"),
        ("shirt_001 (2).jpg", "shirt"),
        ("tshirt_00001.png", "tshirt"),
        ("my shirt_001.jpg", "my shirt"),
        ("folder/shirt_001.jpg", "shirt"),
        ("shirt.jpg", None),
        ("001.jpg", None),
        ("_001.jpg", None),
        ("-001.jpg", None),
        ("shirt_abc.jpg", None),
        ("shirt001.jpg", None),
        ("shirt 001.jpg", None),
        ("", None),
        ("folder\\shirt_001.jpg", "shirt"),  # a Windows path: backslash separates too
        ("\\\\+-0", "+"),  # found by fuzz/fuzz_category.py: was the category "\\\\+"
    ],
)
def test_parse_category(filename: str, expected: str | None) -> None:
    assert parse_category(filename) == expected


@pytest.mark.parametrize(
    "filename",
    ["shirt_001.tar.gz", "shirt_001.", ".shirt_001", "shirt_001..jpg", "a.b_002.png", ".", "..",
     "x/.", "shirt_7.JPG.", "dir.d/shirt_003"],
)  # fmt: skip
def test_parse_category_reads_the_stem_as_pathlib_does(filename: str) -> None:
    """The category comes from the name without its last extension, found without a Path."""
    stem = Path(filename.replace("\\", "/").split("/")[-1]).stem
    match = re.match(r"^(?P<category>.*[^_\-\s])[_-]\d+(?=$|[_\-\s.(])", stem)
    assert parse_category(filename) == (match.group("category").lower() if match else None)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shirt/a.jpg", "shirt"),
        ("Shirt/a.jpg", "shirt"),
        ("shirt/sub/b.jpg", "shirt"),
        ("pants/shirt_001.jpg", "pants"),  # the folder wins over the file name
        ("shirt_001.jpg", "shirt"),
        ("a.jpg", None),
        ("shirt\\a.jpg", "shirt"),
        ("/shirt_001.jpg", None),  # an empty first folder is no category
    ],
)
def test_category_of(name: str, expected: str | None) -> None:
    assert category_of(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        *((f"a{ext}", True) for ext in sorted(IMAGE_EXTENSIONS)),
        ("a.JPG", True),
        ("a.Png", True),
        ("a.txt", False),
        ("a.jpg.txt", False),
        ("README", False),
        (".hidden.jpg", False),
    ],
)
def test_is_image_file(name: str, expected: bool) -> None:
    assert is_image_file(Path(name)) is expected


# --- scanning ----------------------------------------------------------------------------------


def test_scan_images_flat_layout(tmp_path: Path) -> None:
    touch(tmp_path, "shirt_002.jpg", "shirt_001.jpg", "pants_001.PNG", "photo.webp")
    records = scan_images(tmp_path)
    assert [(r.name, r.category) for r in records] == [
        ("pants_001.PNG", "pants"),
        ("photo.webp", None),
        ("shirt_001.jpg", "shirt"),
        ("shirt_002.jpg", "shirt"),
    ]
    assert all(r.path == tmp_path / r.name for r in records)


def test_scan_images_sub_folder_layout(tmp_path: Path) -> None:
    touch(tmp_path, "shirt/a.jpg", "shirt/b.png", "Pants/x.jpg", "pants2/deep/y.jpg", "loose.jpg")
    records = scan_images(str(tmp_path))  # a str works as well as a Path
    assert [(r.name, r.category) for r in records] == [
        ("Pants/x.jpg", "pants"),
        ("loose.jpg", None),
        ("pants2/deep/y.jpg", "pants2"),
        ("shirt/a.jpg", "shirt"),
        ("shirt/b.png", "shirt"),
    ]


def test_scan_images_ignores_hidden_and_non_image_files(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "shirt_001.jpg",
        ".shirt_002.jpg",  # hidden file
        ".thumbnails/shirt_003.jpg",  # inside a hidden folder
        "notes.txt",
        "README",
        "shirt_004.jpg.part",
        "Thumbs.db",
        "shirt/.DS_Store",
    )
    (tmp_path / "folder.jpg").mkdir()  # a folder with an image-like name is not an image
    assert [r.name for r in scan_images(tmp_path)] == ["shirt_001.jpg"]


def test_scan_images_empty_folder(tmp_path: Path) -> None:
    assert scan_images(tmp_path) == []


def test_scan_images_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError) as info:
        scan_images(missing)
    message = str(info.value)
    assert "not found" in message
    assert str(missing) in message
    assert "--data" in message


def test_scan_images_file_instead_of_folder(tmp_path: Path) -> None:
    touch(tmp_path, "shirt_001.jpg")
    with pytest.raises(DatasetError, match="is a file: name the folder"):
        scan_images(tmp_path / "shirt_001.jpg")


# --- require_categories / dataset_stats --------------------------------------------------------


def records_for(*names: str) -> list[ImageRecord]:
    return [ImageRecord(n, category_of(n), Path("/data") / n) for n in names]


def test_require_categories_keeps_usable_and_drops_single_image_categories() -> None:
    records = records_for(
        "shirt_001.jpg", "shirt_002.jpg", "pants_001.jpg", "pants_002.jpg", "hat_001.jpg", "x.jpg"
    )
    kept = require_categories(records, "/data")
    assert [r.name for r in kept] == [
        "shirt_001.jpg",
        "shirt_002.jpg",
        "pants_001.jpg",
        "pants_002.jpg",
    ]


@pytest.mark.parametrize(
    ("names", "found"),
    [
        ((), ["0 images", "categories: none", "0 without a category"]),
        (("a.jpg", "b.jpg"), ["2 images", "categories: none", "2 without a category"]),
        (
            ("shirt_001.jpg", "shirt_002.jpg", "shirt_003.jpg"),
            ["3 images", "categories: shirt (3)", "0 without a category"],
        ),
        (
            # Two categories, but one of them has a single image.
            ("shirt_001.jpg", "shirt_002.jpg", "pants_001.jpg", "x.jpg"),
            ["4 images", "categories: pants (1), shirt (2)", "1 without a category"],
        ),
    ],
)
def test_require_categories_explains_what_was_found(names: tuple[str, ...], found: list[str]):
    with pytest.raises(DatasetError) as info:
        require_categories(records_for(*names), "/my/data")
    message = str(info.value)
    assert "No categories detected" in message
    assert "imgsim rename" in message
    assert "/my/data" in message
    for part in found:
        assert part in message


def test_dataset_stats() -> None:
    records = records_for(
        "shirt_001.jpg", "shirt_002.jpg", "pants/a.jpg", "pants/b.jpg", "pants/c.jpg", "hat_1.jpg"
    )
    records += records_for("z.jpg", "a.jpg")
    assert dataset_stats(records, Path("/data")) == {
        "data_dir": "/data",
        "total_images": 8,
        "num_categories": 3,
        "categories": {"hat": 1, "pants": 3, "shirt": 2},
        "uncategorised": ["a.jpg", "z.jpg"],
        "usable": True,
    }


def test_dataset_stats_not_usable() -> None:
    stats = dataset_stats(records_for("shirt_001.jpg", "shirt_002.jpg", "hat_001.jpg"), "d")
    assert stats["num_categories"] == 2
    assert stats["categories"] == {"hat": 1, "shirt": 2}
    assert stats["usable"] is False
    assert dataset_stats([], "d") == {
        "data_dir": "d",
        "total_images": 0,
        "num_categories": 0,
        "categories": {},
        "uncategorised": [],
        "usable": False,
    }


# --- load_image: every mode comes back as RGB --------------------------------------------------


def solid(mode: str, color, size: tuple[int, int] = (4, 3)) -> Image.Image:
    return Image.new(mode, size, color)


def test_load_rgb_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    solid("RGB", (200, 30, 60)).save(path, quality=95)
    im = load_image(path)
    assert im.mode == "RGB"
    assert im.size == (4, 3)
    assert np.abs(pixels(im) - (200, 30, 60)).max() <= 4


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("WEBP", {"lossless": True}),
        ("GIF", {}),
    ],
)
def test_load_rgb_formats_exactly(tmp_path: Path, fmt: str, params: dict) -> None:
    path = tmp_path / f"a.{fmt.lower()}"
    solid("RGB", (10, 200, 30)).save(path, fmt, **params)
    im = load_image(path)
    assert im.mode == "RGB"
    assert im.size == (4, 3)
    assert (pixels(im) == (10, 200, 30)).all()


def test_load_grayscale_png(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(np.array([[0, 77], [128, 255]], dtype=np.uint8), "L").save(path)
    im = load_image(path)
    assert im.mode == "RGB"
    assert pixels(im)[..., 0].tolist() == [[0, 77], [128, 255]]
    assert (pixels(im) == pixels(im)[..., :1]).all()  # R = G = B


def test_load_grayscale_alpha_png(tmp_path: Path) -> None:
    # (luminance, alpha): opaque black, transparent black, half-transparent black.
    arr = np.array([[[0, 255], [0, 0], [0, 102]]], dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(arr, "LA").save(path)
    im = load_image(path)
    assert im.mode == "RGB"
    # Over white: 255 * (1 - 102/255) = 153.
    assert np.abs(pixels(im)[0, :, 0] - [0, 255, 153]).max() <= 1


def test_load_palette_png_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (3, 1))
    im.putpalette([*RED, *BLUE, 0, 255, 0])
    im.putdata([0, 1, 2])
    path = tmp_path / "a.png"
    im.save(path, transparency=0)  # palette entry 0 (red) is transparent
    out = load_image(path)
    assert out.mode == "RGB"
    assert [tuple(p) for p in pixels(out)[0]] == [WHITE, BLUE, (0, 255, 0)]


@pytest.mark.parametrize(
    ("mode", "values", "key", "expected"),
    [
        ("L", [0, 200], 0, [WHITE, (200, 200, 200)]),
        ("RGB", [RED, BLUE], RED, [WHITE, BLUE]),
    ],
)
def test_load_colour_key_transparency_becomes_white(mode, values, key, expected) -> None:
    # PNG's tRNS chunk on a grey or RGB image: every pixel of the key colour is transparent.
    im = Image.new(mode, (2, 1))
    im.putdata(values)
    out = load_image(encode(im, "PNG", transparency=key))
    assert out.mode == "RGB"
    assert [tuple(p) for p in pixels(out)[0]] == expected


def test_load_rgba_transparent_becomes_white(tmp_path: Path) -> None:
    arr = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 51]]], dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(arr, "RGBA").save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    got = pixels(out)[0]
    assert tuple(got[0]) == WHITE
    assert tuple(got[1]) == BLUE
    # Black at alpha 51/255 = 20 % over white: 255 * 0.8 = 204.
    assert np.abs(got[2] - 204).max() <= 1


def test_load_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    solid("CMYK", (0, 255, 255, 0)).save(path, quality=95)  # no cyan or black: red
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    out = load_image(path)
    assert out.mode == "RGB"
    assert np.abs(pixels(out) - RED).max() <= 8


def test_load_16_bit_grayscale_png_scales_to_8_bits(tmp_path: Path) -> None:
    arr = np.array([[65535, 32768, 0, 256]], dtype=np.uint16)
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I;16")
    out = load_image(path)
    assert out.mode == "RGB"
    # v * 255 / 65535, rounded: 65535 → 255, 32768 → 127.5 → 128, 256 → 0.996 → 1.
    assert pixels(out)[0, :, 0].tolist() == [255, 128, 0, 1]


def test_load_one_bit_png(tmp_path: Path) -> None:
    im = Image.new("1", (2, 1))
    im.putdata([0, 255])
    path = tmp_path / "a.png"
    im.save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    assert [tuple(p) for p in pixels(out)[0]] == [(0, 0, 0), WHITE]


def test_load_animated_gif_takes_first_frame(tmp_path: Path) -> None:
    frames = [solid("RGB", RED), solid("RGB", BLUE), solid("RGB", (0, 255, 0))]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 3
    out = load_image(path)
    assert out.mode == "RGB"
    assert (pixels(out) == RED).all()


def test_load_applies_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "a.jpg"
    solid("RGB", (120, 120, 120), size=(8, 4)).save(path, exif=exif)
    out = load_image(path)
    assert out.mode == "RGB"
    assert out.size == (4, 8)


def test_load_from_bytes_and_file_like_objects(tmp_path: Path) -> None:
    data = encode(solid("RGB", BLUE), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    for source in (data, io.BytesIO(data), str(path), path):
        out = load_image(source)
        assert out.mode == "RGB"
        assert (pixels(out) == BLUE).all()
    with open(path, "rb") as fh:
        assert (pixels(load_image(fh)) == BLUE).all()


def test_load_with_draft_size_shrinks_big_jpeg() -> None:
    data = encode(solid("RGB", RED, size=(800, 600)), "JPEG")
    out = load_image(data, draft_size=64)
    assert out.mode == "RGB"
    assert 64 <= min(out.size) < 600  # decoded at a reduced scale, never below the asked size
    assert np.abs(pixels(out) - RED).max() <= 8


# --- load_image: unreadable inputs -------------------------------------------------------------


def corrupt_inputs() -> dict[str, tuple[str, bytes]]:
    jpeg = encode(noise_image(), "JPEG", quality=95)
    png = encode(noise_image(), "PNG")
    return {
        "random bytes": ("a.jpg", np.random.default_rng(1).bytes(2000)),
        "text file": ("a.png", b"this is not an image\n" * 20),
        "truncated jpeg": ("a.jpg", jpeg[: len(jpeg) // 2]),
        "truncated png": ("a.png", png[: len(png) // 2]),
        "png header only": ("a.png", png[:64]),
        "empty file": ("a.jpg", b""),
        "huge png header": ("a.png", png_declaring(100_000, 100_000)),
        "zero-size png header": ("a.png", png_declaring(0, 0)),
    }


@pytest.mark.parametrize("case", list(corrupt_inputs()))
def test_load_corrupt_file_raises_unreadable(tmp_path: Path, case: str) -> None:
    name, data = corrupt_inputs()[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UnreadableImageError):
        load_image(path)
    with pytest.raises(UnreadableImageError):
        load_image(data)


def test_load_refuses_more_than_max_pixels() -> None:
    data = encode(solid("RGB", RED, size=(20, 10)), "PNG")
    assert load_image(data, max_pixels=200).size == (20, 10)
    with pytest.raises(UnreadableImageError, match="too large"):
        load_image(data, max_pixels=199)


# 7000 × 7000 RGB = 196 MB decoded: over the memory budget (a PNG has no reduced decode);
# 100 000 × 100 000 is over the pixel ceiling, ours and Pillow's.
@pytest.mark.parametrize("side", [7000, 100_000])
def test_load_refuses_header_declaring_too_many_pixels(side: int) -> None:
    with pytest.raises(UnreadableImageError, match="too large"):
        load_image(png_declaring(side, side))


def foreign_formats() -> dict[str, bytes]:
    """Files Pillow could open but imgsim must not: its decoders for them are attack surface."""
    tiny = solid("RGB", RED, size=(16, 16))
    return {
        "ICO": encode(tiny, "ICO"),
        "TGA": encode(tiny, "TGA"),
        "EPS": encode(tiny, "EPS"),  # Pillow would hand this to Ghostscript
        "PPM": encode(tiny, "PPM"),
        # A bare Photoshop header (Pillow cannot write PSD): version 1, 3 channels, 16×16, 8 bits.
        "PSD": b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 16, 16, 8, 3) + b"\0" * 64,
    }


@pytest.mark.parametrize("fmt", list(foreign_formats()))
def test_load_refuses_formats_imgsim_does_not_support(fmt: str) -> None:
    data = foreign_formats()[fmt]
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == fmt  # Pillow alone would take it
    with pytest.raises(UnreadableImageError, match="not a readable image"):
        load_image(data)


# Found by fuzz/fuzz_decode.py in CI: Pillow's TIFF loader raised TypeError on it.
FUZZ_TIFF = base64.b64decode(
    "SUkqADQAAAB4nOPmJg3IkwhMSQReJIIEEkEpiaCLRLCARLCVRHCKRPCARPCFRAAAfvAfIAoAAAEDAAEAAAAQAAAA"
    "AQEDAAEAAAAMAH4AAAIBAwABAgMEBQYHCAkKC//EALUQAAIBAAMAAACyAAAAAwEDAAEAAAAIAAAABgEDAAEAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAEQEHAAEAAAAIAAAAFQEDAAEAAAADAAAAFgEDAAEAAAAMAAAA"
    "FwEEAAEAAAEAAAABAAAAAAAAAAgACAAIAA=="
)


def test_a_tiff_that_crashes_pillow_is_unreadable() -> None:
    with pytest.raises(UnreadableImageError, match="not a readable image"):
        load_image(FUZZ_TIFF, 1_000_000, draft_size=32)


def test_load_missing_file_raises_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError):
        load_image(tmp_path / "missing.jpg")


# --- arrays and batch decoding -----------------------------------------------------------------


def test_to_array_resizes_to_uint8_chw() -> None:
    arr = to_array(solid("RGB", (1, 2, 3), size=(10, 6)), 4)
    assert arr.shape == (3, 4, 4)
    assert arr.dtype == np.uint8
    assert arr[:, 0, 0].tolist() == [1, 2, 3]
    assert arr.flags.c_contiguous


def test_decode_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    solid("RGB", RED, size=(300, 200)).save(path, quality=95)
    arr = decode_file(path, 16)
    assert arr.shape == (3, 16, 16)
    assert arr.dtype == np.uint8
    assert np.abs(arr.astype(int) - np.array(RED).reshape(3, 1, 1)).max() <= 8


COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]


@pytest.fixture
def folder_with_corrupt_file(tmp_path: Path) -> Path:
    for i, colour in enumerate(COLOURS[:2]):
        solid("RGB", colour, size=(12, 8)).save(tmp_path / f"img_{i}.png")
    (tmp_path / "img_2.jpg").write_bytes(b"definitely not a jpeg")
    for i, colour in enumerate(COLOURS[2:], start=3):
        solid("RGB", colour, size=(12, 8)).save(tmp_path / f"img_{i}.png")
    return tmp_path


@pytest.mark.parametrize("workers", [0, 2])
def test_iter_decoded_skips_corrupt_file_with_warning(
    folder_with_corrupt_file: Path, caplog: pytest.LogCaptureFixture, workers: int
) -> None:
    records = scan_images(folder_with_corrupt_file)
    assert [r.name for r in records] == [
        "img_0.png",
        "img_1.png",
        "img_2.jpg",
        "img_3.png",
        "img_4.png",
    ]
    with caplog.at_level(logging.WARNING, logger="imgsim"):
        batches = list(iter_decoded(records, size=6, batch_size=2, workers=workers))

    indices = [i for rows, _ in batches for i in rows]
    assert indices == [0, 1, 3, 4]
    for rows, arr in batches:
        assert arr.shape == (len(rows), 3, 6, 6)
        assert arr.dtype == np.uint8
    stacked = np.concatenate([arr for _, arr in batches])
    assert [tuple(int(v) for v in a[:, 0, 0]) for a in stacked] == COLOURS

    warnings = [r for r in caplog.records if r.name == "imgsim" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "img_2.jpg" in warnings[0].getMessage()


def test_iter_decoded_all_unreadable_yields_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"nope")
    assert list(iter_decoded(scan_images(tmp_path), size=4)) == []


def test_a_first_decode_loads_only_the_plugins_of_the_decoded_formats(tmp_path: Path) -> None:
    """Pillow loads all its ~40 plugins (60 ms) when a format it is asked for is missing."""
    import subprocess
    import sys

    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4), RED).save(path)
    probe = (
        "import sys; from PIL import Image; "
        "from imgsim.images.data import DECODE_FORMATS, load_image; "
        "load_image(sys.argv[1]); "
        "print(set(DECODE_FORMATS) <= set(Image.OPEN), 'EPS' in Image.OPEN)"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run(
        [sys.executable, "-c", probe, str(path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": src},
    )  # fmt: skip
    assert out.stdout.split() == ["True", "False"], out.stderr
