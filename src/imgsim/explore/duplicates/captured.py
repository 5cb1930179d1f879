"""When a picture was taken: the camera's EXIF DateTimeOriginal, else the file's mtime."""

from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from ...images.data import DECODE_FORMATS

EXIF_IFD = 0x8769  # the Exif sub-IFD, where cameras write DateTimeOriginal
DATE_TIME_ORIGINAL = 0x9003
EXIF_FORMAT = "%Y:%m:%d %H:%M:%S"  # local time of the camera, no zone


def exif_taken(path: Path | BinaryIO) -> float | None:
    """DateTimeOriginal of `path` in seconds since 1970 (read as local time), or None when
    the file has none, a broken one, or cannot be read: the header alone is read."""
    try:
        with Image.open(path, formats=DECODE_FORMATS) as im:
            text = im.getexif().get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None
    if not isinstance(text, str):
        return None
    try:  # cameras pad with NULs or spaces, and write 0000:00:00 when the clock was unset
        return time.mktime(time.strptime(text.strip("\x00 ")[:19], EXIF_FORMAT))
    except (ValueError, OverflowError):
        return None


def capture_time(path: Path, modified: float | None) -> tuple[float | None, str]:
    """(seconds since 1970, where it came from): ("exif") the date the picture was taken,
    else ("file") `modified`, else (None, "")."""
    taken = exif_taken(path)
    if taken is not None:
        return taken, "exif"
    return (modified, "file") if modified is not None else (None, "")
