"""The image dataset: finding images, naming their categories, decoding them safely to RGB."""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import math
import os
import struct
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..core.errors import DatasetError, UnreadableImageError

# What a name says (imgsim.core.names), also read here by the dataset's callers.
from ..core.names import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from ..core.names import category_of, is_image_name
from ..core.names import is_image_file as is_image_file
from ..core.names import parse_category as parse_category
from ..core.paths import name_path
from ..files.folders import walk_names

log = logging.getLogger("imgsim")

# The declared size an image may have (16,384 x 16,384): a bound on decoding time, not on
# memory. Memory is the decode budget below, counted at the size actually decoded, so a
# 16,000 px JPEG (decoded at 1/8 scale) fits while a lossless one that size does not.
# SearchConfig.max_image_pixels repeats this number (config must not import Pillow).
DEFAULT_MAX_PIXELS = 16384 * 16384
# Decoded bytes one image may take (pixels x bytes per pixel, read from the header). Local
# files: 40 M pixels as RGB (Pillow pads RGB to 4 bytes); the web app sets its own, lower one.
DEFAULT_MAX_DECODE_BYTES = 160_000_000
DEFAULT_MAX_CONCURRENT_DECODES = 2  # per process: peak memory is about this x the budget
# Bytes per pixel as Pillow holds a decoded image: bands x bytes per sample, except that it
# pads every multi-band mode to 4 bytes (RGB, LA and PA too). Other modes: 4, the most it uses.
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
# HEIF and AVIF decoders (libheif, libavif) hold their YUV planes (1.5 bytes a pixel at
# 4:2:0, 3 at 4:4:4) next to Pillow's copy while converting: counted on top (measured: a
# 6000 x 4000 AVIF took 141 MB, not the 92 MB of its RGB pixels).
_DECODER_EXTRA_BYTES = {"HEIF": 3, "AVIF": 3}
_STRIP_PIXELS = 1 << 20  # pixels converted at a time on the reduced path
# The only Pillow decoders untrusted bytes may reach: the formats above. Pillow can open ~40
# more (EPS runs Ghostscript, PSD/ICO/TGA/... have had parser bugs); we need none of them.
# JPEG's opener also reads MPO (multi-picture JPEG from cameras), which has no opener of its own.
# HEIF (.heic/.heif, iPhones) is pillow-heif's libheif; AVIF is Pillow's own libavif.
DECODE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "HEIF", "AVIF")
_FORMAT_NAMES = "JPEG, PNG, WebP, BMP, GIF, TIFF, HEIC/HEIF or AVIF"

# Once per process, here, so every decode (and every Image.open of DECODE_FORMATS) sees it.
pillow_heif.register_heif_opener()
# Pillow imports only the plugin of a file's extension, then loads all ~40 plugins (60 ms, the
# first decode of every process: a CLI search, each worker) at the first of DECODE_FORMATS it
# lacks. Its plugins, imported here, cost a few ms.
for _plugin in ("Jpeg", "Png", "WebP", "Bmp", "Gif", "Tiff", "Avif"):
    importlib.import_module(f"PIL.{_plugin}ImagePlugin")
# Pillow's own bomb guard warns over MAX_IMAGE_PIXELS and refuses twice that in Image.open,
# before any check of ours: it stays on (warnings become errors in load_image), at our ceiling.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

NO_CATEGORIES_HELP = (
    "No categories detected: need at least 2 categories with at least 2 images each.\n"
    "Fix it by naming images category_number (shirt_001.jpg, pants_001.jpg), by putting them\n"
    "in one sub-folder per category (dataset/shirt/a.jpg), or with: imgsim rename"
)


@dataclass(frozen=True)
class ImageRecord:
    """One image of the dataset: its name relative to the data folder and its category."""

    name: str  # POSIX path relative to the data folder, e.g. "shirt_001.jpg" or "shirt/a.jpg"
    category: str | None
    path: Path


def scan_images(root: str | Path) -> list[ImageRecord]:
    """All image files under `root` (recursively), sorted by name, with their categories.

    Names are escaped (imgsim.core.paths.escape_name); unreadable folders and symlink loops are
    skipped with a warning (imgsim.files.folders).
    """
    root = Path(root)
    return [record_of(root, name) for name in scan_names(root)]


def scan_names(root: str | Path) -> list[str]:
    """The escaped names of scan_images, sorted, without a record (and a Path) for each."""
    root = Path(root)
    if root.is_file():
        raise DatasetError(f"{root} is a file: name the folder of images (FOLDER or --data DIR)")
    if not root.is_dir():
        raise DatasetError(
            f"Image folder not found: {root}\nPut your images in {root}/ or pass --data DIR."
        )
    return walk_names(root, is_image_name)


def record_of(root: Path, name: str) -> ImageRecord:
    """The record of the escaped `name` found under `root`."""
    return ImageRecord(name, category_of(name), name_path(root, name))


def category_counts(records: Iterable[ImageRecord]) -> Counter[str]:
    """Number of images per category (uncategorised images are not counted)."""
    return Counter(r.category for r in records if r.category)


def require_categories(records: list[ImageRecord], root: str | Path) -> list[ImageRecord]:
    """The usable records, or a DatasetError explaining what was found and how to fix it."""
    counts = category_counts(records)
    usable = {c for c, n in counts.items() if n >= 2}
    if len(usable) < 2:
        found = ", ".join(f"{c} ({n})" for c, n in sorted(counts.items())) or "none"
        uncategorised = sum(1 for r in records if not r.category)
        raise DatasetError(
            f"{NO_CATEGORIES_HELP}\nFound in {root}: {len(records)} images; "
            f"categories: {found}; {uncategorised} without a category."
        )
    return [r for r in records if r.category in usable]


def dataset_stats(records: list[ImageRecord], root: str | Path) -> dict:
    """The per-category breakdown (the original's get_statistics())."""
    counts = category_counts(records)
    return {
        "data_dir": str(root),
        "total_images": len(records),
        "num_categories": len(counts),
        "categories": dict(sorted(counts.items())),
        "uncategorised": sorted(r.name for r in records if not r.category),
        "usable": sum(1 for n in counts.values() if n >= 2) >= 2,
    }


class _DecodeLimits:
    """The process's decode budget and the semaphore that bounds concurrent decodes."""

    def __init__(self, max_bytes: int, concurrent: int) -> None:
        self.max_bytes = max_bytes
        self.concurrent = concurrent
        self.semaphore = threading.BoundedSemaphore(concurrent)


_limits = _DecodeLimits(DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_CONCURRENT_DECODES)


def set_decode_limits(max_bytes: int | None = None, concurrent: int | None = None) -> None:
    """Set this process's decode budget (bytes per image) and concurrent decodes (at least 1).

    A decode already running keeps the semaphore it took; new ones use the new one.
    """
    global _limits
    max_bytes = _limits.max_bytes if max_bytes is None else int(max_bytes)
    concurrent = _limits.concurrent if concurrent is None else int(concurrent)
    if max_bytes < 1 or concurrent < 1:
        raise ValueError("decode limits must be at least 1")
    _limits = _DecodeLimits(max_bytes, concurrent)


def decode_limits() -> tuple[int, int]:
    """(bytes one decoded image may take, decodes at once) of this process."""
    return _limits.max_bytes, _limits.concurrent


def decoded_bytes(size: tuple[int, int], mode: str, fmt: str | None = None) -> int:
    """Memory decoding an image of this size, Pillow mode and format takes.

    Pixels x bytes per pixel as Pillow holds them, plus what the format's decoder holds
    alongside (HEIF, AVIF).
    """
    per_pixel = _MODE_BYTES.get(mode, 4) + _DECODER_EXTRA_BYTES.get(fmt or "", 0)
    return size[0] * size[1] * per_pixel


def load_image(
    source: str | Path | bytes | BinaryIO,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    max_bytes: int | None = None,
) -> Image.Image:
    """Decode any supported image to 8-bit RGB: first frame, EXIF orientation applied.

    Raises UnreadableImageError for anything that is not a complete, decodable image in one of
    DECODE_FORMATS, including images declaring more than `max_pixels` pixels (decompression
    bombs) or whose decoded size, at the reduced scale a JPEG decodes to, is over `max_bytes`
    (default: this process's budget, see set_decode_limits), checked from the header before
    decoding.
    `draft_size` is the side the caller will resize to: JPEGs decode shrunk (DCT scaling), and
    other large images are box-reduced to about twice that before conversion, so the memory
    a decode takes is the decoded image once, plus little.
    At most `concurrent` decodes (set_decode_limits) run at once in a process; others wait.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    limits = _limits
    budget = limits.max_bytes if max_bytes is None else max_bytes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=DECODE_FORMATS) as im, limits.semaphore:
                return _to_rgb(im, max_pixels, draft_size, budget)
    except UnreadableImageError:
        raise
    except UnidentifiedImageError:
        # Pillow's message names the stream object (<_io.BytesIO object at 0x...>): noise.
        raise UnreadableImageError(f"not a readable image (not a {_FORMAT_NAMES} file)") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImageError(f"not a readable image ({exc})") from None
    except (TypeError, IndexError, KeyError, struct.error, ZeroDivisionError, RuntimeError) as exc:
        # Pillow's parsers raise these on some malformed files (fuzz/fuzz_decode.py found a TIFF
        # whose strip offset makes ImageFile.load seek to bytes: TypeError, and an AVIF whose
        # header libavif cannot parse: RuntimeError "Failed to decode image: Not implemented").
        raise UnreadableImageError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    except (Image.DecompressionBombError, MemoryError) as exc:
        raise UnreadableImageError(f"image too large ({exc})") from None


def _to_rgb(im: Image.Image, max_pixels: int, draft_size: int | None, budget: int) -> Image.Image:
    width, height = im.size
    if width < 1 or height < 1:
        raise UnreadableImageError("image has no pixels")
    if width * height > max_pixels:
        raise UnreadableImageError(
            f"image too large: {width}x{height} pixels (limit {max_pixels:,})"
        )
    im.seek(0)  # animated GIF/WebP/TIFF: the first frame
    if draft_size and im.format == "JPEG":
        # The size and mode it will decode to (down to 1/8 scale): what the budget counts.
        im.draft("RGB", (draft_size, draft_size))
    need = decoded_bytes(im.size, im.mode, im.format)
    if need > budget:
        raise UnreadableImageError(
            f"image too large to decode: {im.size[0]}x{im.size[1]} pixels in mode {im.mode} "
            f"take {need / 2**20:.0f} MB (limit {budget / 2**20:.0f} MB)"
        )
    im.load()  # Pillow's default refuses truncated files, so they fail here, not half grey
    factors = _reduce_factors(im.size, draft_size)
    if factors == (1, 1) and decoded_bytes(im.size, "RGBA") <= 4 * _STRIP_PIXELS:
        return _convert_mode(ImageOps.exif_transpose(im))  # small: the simple way
    orientation = im.getexif().get(ExifTags.Base.Orientation)
    out = _reduce_to_rgb(im, factors)
    method = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return out.transpose(method) if method is not None else out


# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _reduce_factors(size: tuple[int, int], draft_size: int | None) -> tuple[int, int]:
    # Down to about twice the side the caller resizes to, per axis, as Pillow's own
    # resize(reducing_gap=2.0) would: the same picture, without a full-size copy first.
    if not draft_size:
        return 1, 1
    return max(1, size[0] // (2 * draft_size)), max(1, size[1] // (2 * draft_size))


def _reduce_to_rgb(im: Image.Image, factors: tuple[int, int]) -> Image.Image:
    """Box-reduce and convert a loaded image to RGB a strip of rows at a time.

    Only one strip exists in another mode at once, so a 16-bit or palette image never has a
    full-size float, RGBA or RGB copy next to its decoded pixels.
    """
    fx, fy = factors
    width, height = im.size
    out = Image.new("RGB", (math.ceil(width / fx), math.ceil(height / fy)))
    top = _high_bit_top(im)
    rows = max(fy, (_STRIP_PIXELS // max(1, width)) // fy * fy)
    for y in range(0, height, rows):
        strip = _convert_mode(im.crop((0, y, width, min(height, y + rows))), top)
        out.paste(strip.reduce((fx, fy)) if factors != (1, 1) else strip, (0, y // fy))
    return out


def _high_bit_top(im: Image.Image) -> float:
    # The white point of a 16/32-bit image, from the whole image, so strips agree.
    if im.mode not in _HIGH_BIT_MODES:
        return 255.0
    if im.mode.startswith("I;16"):
        return 65535.0
    low_high = im.getextrema()
    return 65535.0 if float(low_high[1]) > 255 else 255.0  # type: ignore[arg-type,index]


def _convert_mode(im: Image.Image, top: float | None = None) -> Image.Image:
    if im.mode in _HIGH_BIT_MODES:
        top = _high_bit_top(im) if top is None else top
        # float32, not float64: the one temporary copy is 4 bytes a pixel, not 8.
        arr = np.asarray(im, dtype=np.float32)
        im = Image.fromarray(np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in {"P", "PA"} or "transparency" in im.info:
        # A palette, or a grey/RGB colour key (PNG tRNS), can mark pixels transparent.
        im = im.convert("RGBA")
    if im.mode in {"RGBA", "LA", "La", "RGBa"}:
        # Transparent areas become white, as product photos on a web page usually are.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def to_array(im: Image.Image, size: int) -> np.ndarray:
    """Resize an RGB image to size×size and return it as a uint8 CHW array."""
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def decode_file(path: Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one file straight to a size×size uint8 CHW array.

    A JPEG is decoded at the smallest of 1/2, 1/4, 1/8 scale that still covers `size`
    (libjpeg's DCT scaling, `draft`), so most of the full-size work never happens.
    """
    return to_array(load_image(path, max_pixels, draft_size=size), size)


class ThumbnailCache:
    """Decoded size×size inputs on disk, keyed by file path, size, mtime and inode.

    Re-embedding after retraining (same input size) reads 3×size² bytes per image instead of
    decoding the file again; a changed file has a new key, so it is decoded afresh. Entries
    are written atomically, so processes may share the folder.
    """

    def __init__(self, root: str | Path, size: int) -> None:
        self.root = Path(root) / str(size)
        self.size = size

    def _entry(self, path: Path) -> Path | None:
        try:
            st = path.stat()
        except OSError:
            return None
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{self.size}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.root / digest[:2] / f"{digest}.u8"

    def get(self, path: Path) -> np.ndarray | None:
        """The cached input of `path`, or None."""
        entry = self._entry(path)
        try:
            data = entry.read_bytes() if entry else b""
        except OSError:
            return None
        if len(data) != 3 * self.size * self.size:
            return None
        return np.frombuffer(data, dtype=np.uint8).reshape(3, self.size, self.size).copy()

    def put(self, path: Path, array: np.ndarray) -> None:
        """Keep `array` as the input of `path` (best effort: a full disk only costs speed)."""
        entry = self._entry(path)
        if entry is None:
            return
        from ..core.fileio import replace_unsynced

        try:
            replace_unsynced(entry, np.ascontiguousarray(array, dtype=np.uint8).tobytes())
        except OSError as exc:
            log.debug("thumbnail cache: cannot write %s: %s", entry, exc)


def decode_records(
    records: list[ImageRecord], size: int, cache: ThumbnailCache | None = None
) -> tuple[list[int], list[np.ndarray], list[tuple[int, str]]]:
    """Decode records to size×size arrays: (positions decoded, arrays, (position, error))."""
    rows, arrays, failed = [], [], []
    for i, record in enumerate(records):
        array = cache.get(record.path) if cache else None
        if array is None:
            try:
                array = decode_file(record.path, size)
            except (UnreadableImageError, OSError) as exc:
                failed.append((i, str(exc)))
                continue
            if cache:
                cache.put(record.path, array)
        rows.append(i)
        arrays.append(array)
    return rows, arrays, failed


class DecodeDataset:
    """Map-style dataset that decodes records lazily; failures come back as messages, not crashes.

    Each item is (index, array or None, error message or None), so DataLoader workers never die
    on a corrupt file and the main process can name it.
    """

    def __init__(self, records: list[ImageRecord], size: int) -> None:
        self.records = records
        self.size = size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            return i, decode_file(self.records[i].path, self.size), None
        except (UnreadableImageError, OSError) as exc:
            return i, None, str(exc)


def _bind_worker(_worker_id: int) -> None:
    from ..core.lifeline import bind_to_parent

    bind_to_parent()  # a killed `imgsim train` leaves no decode worker behind


def _collate(items: list[tuple[int, np.ndarray | None, str | None]]) -> list:
    return items


def iter_decoded(
    records: list[ImageRecord], size: int, batch_size: int = 64, workers: int = 0
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Decode records in batches (in worker processes when `workers` > 0).

    Yields (record indices, uint8 array N×3×size×size); unreadable files are skipped with a
    warning that names them.
    """
    from torch.utils.data import DataLoader

    loader = DataLoader(
        DecodeDataset(records, size),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
        worker_init_fn=_bind_worker if workers else None,
    )
    for items in loader:
        ok = []
        for i, arr, err in items:
            if arr is None:
                log.warning("Skipping unreadable image %s: %s", records[i].name, err)
            else:
                ok.append((i, arr))
        if ok:
            yield [i for i, _ in ok], np.stack([a for _, a in ok])


def default_workers() -> int:
    """Decode processes to use when the user did not choose: one per core, at most 8."""
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)


def probe_file(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Why a file cannot be decoded, read from its header alone (no pixels); None if it looks fine.

    Cheap enough to check every file of a large collection before training; a file whose
    pixel data is damaged still fails later, at decode time.
    """
    try:
        with Image.open(path, formats=DECODE_FORMATS) as im:
            width, height = im.size
    except UnidentifiedImageError:
        return f"not a readable image (not a {_FORMAT_NAMES} file)"
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        return f"not a readable image ({exc})"
    if width < 1 or height < 1:
        return "image has no pixels"
    if width * height > max_pixels:
        return f"image too large: {width}x{height} pixels (limit {max_pixels:,})"
    return None
