"""The image dataset: finding images, naming their categories, decoding them safely to RGB."""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DatasetError, UnreadableImageError

log = logging.getLogger("imgsim")

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 40_000_000
# The only Pillow decoders untrusted bytes may reach: the formats above. Pillow can open ~40
# more (EPS runs Ghostscript, PSD/ICO/TGA/... have had parser bugs); we need none of them.
# JPEG's opener also reads MPO (multi-picture JPEG from cameras), which has no opener of its own.
DECODE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_FORMAT_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"

# "everything before the last _ or - that is followed by a number": the greedy prefix finds the
# last such separator, so long_sleeve_shirt_003 keeps its inner underscores.
_CATEGORY_RE = re.compile(r"^(?P<category>.*[^_\-\s])[_-]\d")
_SEPARATORS = re.compile(r"[/\\]")

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


def parse_category(filename: str) -> str | None:
    """Category from a file name: `long_sleeve_shirt_003.jpg` → `long_sleeve_shirt`."""
    # Backslash counts as a folder separator too (a Windows path): a category never holds one.
    stem = Path(_SEPARATORS.split(filename)[-1]).stem
    match = _CATEGORY_RE.match(stem)
    if not match:
        return None
    return match.group("category").strip().lower()


def category_of(name: str) -> str | None:
    """Category of a dataset-relative name: its first folder if it has one, else its file name."""
    parts = _SEPARATORS.split(name)
    if len(parts) > 1:
        return parts[0].strip().lower() or None
    return parse_category(parts[0])


def is_image_file(path: Path) -> bool:
    """Whether a path looks like an image file imgsim reads (by extension, hidden files skipped)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def scan_images(root: str | Path) -> list[ImageRecord]:
    """All image files under `root` (recursively), sorted by name, with their categories."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"Image folder not found: {root}\nPut your images in {root}/ or pass --data DIR."
        )
    records = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if is_image_file(path):
            name = rel.as_posix()
            records.append(ImageRecord(name, category_of(name), path))
    return records


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


def load_image(
    source: str | Path | bytes | BinaryIO,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode any supported image to 8-bit RGB: first frame, EXIF orientation applied.

    Raises UnreadableImageError for anything that is not a complete, decodable image in one of
    DECODE_FORMATS, including images with more than `max_pixels` pixels (decompression bombs).
    `draft_size` lets JPEG decoding shrink the image on the fly (much faster for big photos).
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=DECODE_FORMATS) as im:
                return _to_rgb(im, max_pixels, draft_size)
    except UnreadableImageError:
        raise
    except UnidentifiedImageError:
        # Pillow's message names the stream object (<_io.BytesIO object at 0x...>): noise.
        raise UnreadableImageError(f"not a readable image (not a {_FORMAT_NAMES} file)") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImageError(f"not a readable image ({exc})") from None
    except (Image.DecompressionBombError, MemoryError) as exc:
        raise UnreadableImageError(f"image too large ({exc})") from None


def _to_rgb(im: Image.Image, max_pixels: int, draft_size: int | None) -> Image.Image:
    width, height = im.size
    if width < 1 or height < 1:
        raise UnreadableImageError("image has no pixels")
    if width * height > max_pixels:
        raise UnreadableImageError(
            f"image too large: {width}x{height} pixels (limit {max_pixels:,})"
        )
    im.seek(0)  # animated GIF/WebP/TIFF: the first frame
    if draft_size and im.format == "JPEG":
        im.draft("RGB", (draft_size, draft_size))
    im.load()  # Pillow's default refuses truncated files, so they fail here, not half grey
    im = ImageOps.exif_transpose(im)
    return _convert_mode(im)


def _convert_mode(im: Image.Image) -> Image.Image:
    if im.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
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
    """Decode one file straight to a size×size uint8 CHW array."""
    return to_array(load_image(path, max_pixels, draft_size=size), size)


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
    import os

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
