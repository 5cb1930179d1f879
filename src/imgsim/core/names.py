"""What an image's name says without opening it: whether imgsim reads it, and its category.

Kept apart from the decoder (imgsim.images.data, which imports Pillow) so that the stores and
the renamer can name categories without it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UnsafePathError
from .paths import escape_name, unescape_name

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
# "everything before the last _ or - that is followed by a number": the greedy prefix finds the
# last such separator, so long_sleeve_shirt_003 keeps its inner underscores. The number is a
# whole word (it ends the name or a separator follows): summer_1am is a name, not summer #1.
_CATEGORY_RE = re.compile(r"^(?P<category>.*[^_\-\s])[_-]\d+(?=$|[_\-\s.(])")
_SEPARATORS = re.compile(r"[/\\]")


def parse_category(filename: str) -> str | None:
    """Category from a file name: `long_sleeve_shirt_003.jpg` → `long_sleeve_shirt`."""
    # Backslash counts as a folder separator too (a Windows path): a category never holds one.
    match = _CATEGORY_RE.match(_stem(_SEPARATORS.split(filename)[-1]))
    if not match:
        return None
    return match.group("category").strip().lower()


def _stem(name: str) -> str:
    """Path(name).stem for a name without separators, without building a Path (a scan of a
    large folder asks for thousands)."""
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def category_of(name: str) -> str | None:
    """Category of a dataset-relative name: its first folder if it has one, else its file name.

    `name` may be escaped (imgsim.core.paths): the category is that of the file name, escaped too.
    """
    try:
        raw = unescape_name(name)
    except UnsafePathError:
        raw = name  # not an escaped name (a Windows path from an upload): read it as it is
    parts = _SEPARATORS.split(raw)
    category = parts[0].strip().lower() if len(parts) > 1 else parse_category(parts[0])
    return escape_name(category) if category else None


def is_image_file(path: Path) -> bool:
    """Whether a path looks like an image file imgsim reads (by extension, hidden files skipped)."""
    return is_image_name(path.name)


def is_image_name(name: str) -> bool:
    """Whether a file name (its last part) looks like an image file imgsim reads."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")
