"""What identifies an image's content: SHA-256 of its bytes and a 64-bit perceptual hash."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import DECODE_FORMATS, ImageRecord, load_image
from ..errors import UnreadableImageError

# The perceptual hash sees a 32x32 grey version of the image: decoding at about twice that
# (JPEG DCT scaling, box reduction of large images) is as good and many times faster.
HASH_DECODE_SIZE = 64
CHUNK = 128  # images per task a worker takes
# A worker takes about a second to start (imports): below this many images per worker,
# hashing here is faster.
MIN_IMAGES_PER_WORKER = 512


@dataclass(frozen=True)
class Fingerprint:
    """One image: its name, file size, pixel size, SHA-256 and perceptual hash (DCT, 64 bits)."""

    name: str
    size: int
    width: int
    height: int
    sha256: str
    phash: int


def perceptual_hash(image: Image.Image) -> int:
    """imagehash's pHash (DCT of a 32x32 grey image, 8x8 low frequencies) as a 64-bit integer."""
    import imagehash

    bits = imagehash.phash(image).hash.ravel()  # 64 booleans, most significant first
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def fingerprint_bytes(name: str, data: bytes) -> Fingerprint:
    """Fingerprint of one image's bytes; UnreadableImageError when they are not an image."""
    image = load_image(data, draft_size=HASH_DECODE_SIZE)  # checks the header and bounds
    with Image.open(io.BytesIO(data), formats=DECODE_FORMATS) as header:
        width, height = header.size  # full size: load_image decoded it reduced
    digest = hashlib.sha256(data).hexdigest()
    return Fingerprint(name, len(data), width, height, digest, perceptual_hash(image))


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
    from ..lifeline import bind_to_parent

    bind_to_parent(parent)  # a killed `imgsim duplicates` leaves no worker behind


def iter_fingerprints(
    records: Sequence[ImageRecord], workers: int = 1
) -> Iterator[tuple[list[Fingerprint], list[tuple[str, str]]]]:
    """Fingerprint records in chunks, in `workers` processes when there are enough images.

    Yields (fingerprints, failures) per chunk, in order; workers are started fresh ("spawn")
    and die with this process.
    """
    chunks = [records[i : i + CHUNK] for i in range(0, len(records), CHUNK)]
    count = min(workers, len(chunks), len(records) // MIN_IMAGES_PER_WORKER)
    if count <= 1:
        yield from (fingerprint_records(chunk) for chunk in chunks)
        return
    with ProcessPoolExecutor(
        count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    ) as pool:
        # map submits every chunk at once: tasks are a few KB of names, results stream back.
        yield from pool.map(fingerprint_records, chunks)
