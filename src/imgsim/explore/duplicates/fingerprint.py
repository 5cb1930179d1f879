"""What identifies an image's content: SHA-256 of its bytes and pixels, perceptual hashes."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ...core.errors import UnreadableImageError
from ...images.data import DECODE_FORMATS, ImageRecord, load_image
from .views import view_hashes

# The perceptual hash sees a 32x32 grey version of the image: decoding at about twice that
# (JPEG DCT scaling, box reduction of large images) is as good and many times faster.
HASH_DECODE_SIZE = 64
CHUNK = 128  # images per task a worker takes
# A worker takes about a second to start (imports): below this many images per worker,
# hashing here is faster.
MIN_IMAGES_PER_WORKER = 512


@dataclass(frozen=True)
class Fingerprint:
    """One image: its name, file size, pixel size, SHA-256 and perceptual hash (DCT, 64 bits).

    `views` are the perceptual hashes of the image turned and mirrored (views.DIHEDRAL, the
    first is `phash`); `pixels` a digest of its decoded pixels, the same for the same picture
    saved losslessly in another file; `format` the file's format (PNG, JPEG...).
    """

    name: str
    size: int
    width: int
    height: int
    sha256: str
    phash: int
    views: tuple[int, ...] = ()
    pixels: str = ""
    format: str = ""


def perceptual_hash(image: Image.Image) -> int:
    """imagehash's pHash (DCT of a 32x32 grey image, 8x8 low frequencies) as a 64-bit integer."""
    return view_hashes(image)[0]


def fingerprint_bytes(name: str, data: bytes) -> Fingerprint:
    """Fingerprint of one image's bytes; UnreadableImageError when they are not an image."""
    image = load_image(data, draft_size=HASH_DECODE_SIZE)  # checks the header and bounds
    return fingerprint_decoded(name, data, image)


def fingerprint_decoded(name: str, data: bytes, image: Image.Image) -> Fingerprint:
    """Fingerprint of one image's bytes and their decode at HASH_DECODE_SIZE (load_image)."""
    with Image.open(io.BytesIO(data), formats=DECODE_FORMATS) as header:
        width, height = header.size  # full size: load_image decoded it reduced
        kind = header.format or ""
    digest = hashlib.sha256(data).hexdigest()
    # The reduced pixels and the full size: equal for one picture in two lossless files.
    pixels = hashlib.sha256(f"{width}x{height}".encode() + image.tobytes()).hexdigest()
    views = view_hashes(image)
    return Fingerprint(name, len(data), width, height, digest, views[0], views, pixels, kind)


def fingerprint_records(
    records: Sequence[ImageRecord],
) -> tuple[list[Fingerprint], list[tuple[str, str]]]:
    """Fingerprints of readable records, and (name, why) of those that cannot be read."""
    done, failed = [], []
    for record in records:
        try:
            done.append(fingerprint_bytes(record.name, Path(record.path).read_bytes()))
        except (UnreadableImageError, OSError) as exc:
            failed.append((record.name, str(exc)))
    return done, failed


def _init_worker(parent: int) -> None:
    from ...core.lifeline import bind_to_parent

    bind_to_parent(parent)  # a killed `imgsim duplicates` leaves no worker behind


def iter_fingerprints(
    records: Sequence[ImageRecord],
    workers: int = 1,
    work: Callable[[Sequence[ImageRecord]], tuple[list, list[tuple[str, str]]]] = (
        fingerprint_records
    ),
) -> Iterator[tuple[list[Fingerprint], list[tuple[str, str]]]]:
    """Fingerprint records in chunks, in `workers` processes when there are enough images.

    Yields (fingerprints, failures) per chunk, in order; workers are started fresh ("spawn")
    and die with this process. `work` (a module-level function, for the workers) does a chunk.
    """
    chunks = [records[i : i + CHUNK] for i in range(0, len(records), CHUNK)]
    count = min(workers, len(chunks), len(records) // MIN_IMAGES_PER_WORKER)
    if count <= 1:
        yield from (work(chunk) for chunk in chunks)
        return
    with ProcessPoolExecutor(
        count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    ) as pool:
        # map submits every chunk at once: tasks are a few KB of names, results stream back.
        yield from pool.map(work, chunks)
