"""An image's duplicate data kept in the store: fingerprint, thumbnail and capture date.

Derived from one reduced decode of the file (the fingerprint's and the thumbnail's are the
same decode), so `imgsim duplicates` over an indexed collection reads no file that has not
changed since it was derived.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...core.errors import UnreadableImageError
from ...files.filefacts import FileFacts
from ...images.data import ImageRecord, load_image
from ...store.base import Derived
from .captured import exif_taken
from .fingerprint import HASH_DECODE_SIZE, Fingerprint, fingerprint_decoded, iter_fingerprints
from .views import THUMB_SIDE

# What the stored data means: a change to the hashes, the thumbnail or this layout bumps it,
# and rows of another version are derived again.
DERIVED_VERSION = 1


@dataclass(frozen=True)
class ImageFacts:
    """What the finder knows of one image without reading its file again."""

    fingerprint: Fingerprint
    taken: float | None  # EXIF DateTimeOriginal (captured.exif_taken), None without one
    thumb: np.ndarray | None = None  # THUMB_SIDE² RGB (views.thumbnail), when asked


def derive_bytes(name: str, data: bytes) -> ImageFacts:
    """The fingerprint, thumbnail and capture date of one image's bytes, decoded once;
    UnreadableImageError when they are not an image."""
    image = load_image(data, draft_size=HASH_DECODE_SIZE)  # checks the header and bounds
    found = fingerprint_decoded(name, data, image)
    if THUMB_SIDE != HASH_DECODE_SIZE:  # else the same decode as views.thumbnail's
        image = load_image(data, draft_size=THUMB_SIDE)
    thumb = np.asarray(image.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX))
    return ImageFacts(found, exif_taken(io.BytesIO(data)), thumb)


def derive_or_none(name: str, data: bytes) -> ImageFacts | None:
    """derive_bytes, or None when the bytes do not decode (the finder says so later)."""
    try:
        return derive_bytes(name, data)
    except UnreadableImageError:
        return None


def encode(facts: ImageFacts, stat: FileFacts) -> Derived:
    """The store's row of one image; `stat` is its file's when the bytes were read."""
    summary = {**asdict(facts.fingerprint), "taken": facts.taken}
    del summary["name"]  # the row's key
    thumb = b"" if facts.thumb is None else np.ascontiguousarray(facts.thumb, np.uint8).tobytes()
    return Derived(
        DERIVED_VERSION,
        facts.fingerprint.sha256,
        stat.size,
        stat.mtime_ns,
        json.dumps(summary, separators=(",", ":")).encode(),
        thumb,
    )


def decode(name: str, row: Derived) -> ImageFacts:
    """The facts a stored row holds (its thumbnail only if it was read)."""
    summary = json.loads(row.summary)
    taken = summary.pop("taken")
    summary["views"] = tuple(summary["views"])
    thumb = None
    if len(row.thumb) == THUMB_SIDE * THUMB_SIDE * 3:
        thumb = np.frombuffer(row.thumb, np.uint8).reshape(THUMB_SIDE, THUMB_SIDE, 3)
    return ImageFacts(Fingerprint(name, **summary), taken, thumb)


def current(row: Derived | None, stat: FileFacts | None, indexed: FileFacts | None) -> bool:
    """Whether a stored row still describes the file: its version, and the file's stat is the
    one it was derived at, or the indexed one of the same content (re-stat by an update)."""
    if row is None or stat is None or row.version != DERIVED_VERSION:
        return False
    now = (stat.size, stat.mtime_ns)
    if row.size is not None and (row.size, row.mtime_ns) == now:
        return True
    return indexed is not None and indexed.sha256 == row.sha256 and indexed.size is not None and (
        (indexed.size, indexed.mtime_ns) == now
    )  # fmt: skip


def derive_records(
    records: Sequence[ImageRecord],
) -> tuple[list[tuple[ImageFacts, FileFacts]], list[tuple[str, str]]]:
    """Facts of readable records with the stat they were read at; (name, why) of the rest."""
    done, failed = [], []
    for record in records:
        try:
            st = Path(record.path).stat()
            data = Path(record.path).read_bytes()
            stat = FileFacts(st.st_size, st.st_mtime_ns)
            done.append((derive_bytes(record.name, data), stat))
        except (UnreadableImageError, OSError) as exc:
            failed.append((record.name, str(exc)))
    return done, failed


def iter_derived(
    records: Sequence[ImageRecord], workers: int = 1
) -> Iterator[tuple[list[tuple[ImageFacts, FileFacts]], list[tuple[str, str]]]]:
    """derive_records in chunks, in worker processes when there are enough images."""
    return iter_fingerprints(records, workers, derive_records)  # type: ignore[arg-type]
