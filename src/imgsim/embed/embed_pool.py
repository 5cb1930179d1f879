"""Identical worker processes that each decode and embed chunks of images, back in order."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.interrupt import signals_held
from ..images.data import ImageRecord, ThumbnailCache, decode_records
from ..model.embedder import Embedder, EmbedderSpec

AHEAD_PER_WORKER = 3  # chunks queued per worker: none idles, memory stays bounded
# A worker takes a second or more to start (imports, runtime); below this many images per
# worker, running here is faster than starting them.
MIN_IMAGES_PER_WORKER = 256


@dataclass
class Chunk:
    """One chunk's results: positions (into all records) embedded, their features, failures."""

    rows: list[int]
    features: np.ndarray
    failed: list[tuple[int, str]]


def embed_chunk(
    embedder: Embedder, records: list[ImageRecord], start: int, cache: ThumbnailCache | None
) -> Chunk:
    """Decode `records` (straight to the model's size) and embed them in one forward pass."""
    rows, arrays, failed = decode_records(records, embedder.image_size, cache)
    features = embedder.embed(np.stack(arrays)) if arrays else np.empty((0, 0), np.float32)
    return Chunk([start + i for i in rows], features, [(start + i, e) for i, e in failed])


# One Embedder per worker process, built once by the pool's initializer.
_worker: dict[str, object] = {}


def _init_worker(spec: EmbedderSpec, parent: int, cache_root: str | None) -> None:
    from ..core.lifeline import bind_to_parent

    bind_to_parent(parent)  # first: a parent killed while we load must not leave us behind
    # One runtime thread each: the workers, one per core, are the parallelism.
    _worker["embedder"] = Embedder.from_spec(spec, threads=1)
    _worker["cache"] = ThumbnailCache(cache_root, spec.image_size) if cache_root else None


def _run_chunk(records: list[ImageRecord], start: int) -> Chunk:
    embedder = _worker["embedder"]
    assert isinstance(embedder, Embedder)
    cache = _worker["cache"]
    return embed_chunk(
        embedder, records, start, cache if isinstance(cache, ThumbnailCache) else None
    )


def _submit(pool: ProcessPoolExecutor, part: list[ImageRecord], start: int) -> Future[Chunk]:
    with signals_held():  # a submit may start a worker process
        return pool.submit(_run_chunk, part, start)


def iter_embedded(
    embedder: Embedder,
    records: list[ImageRecord],
    batch_size: int = 64,
    workers: int = 1,
    cache_root: str | Path | None = None,
) -> Iterator[Chunk]:
    """Chunks of `batch_size` records decoded and embedded by `workers` processes, in order.

    With one worker (or too few images to be worth starting more) everything runs here, in
    this process. Workers are started fresh ("spawn": no copy of this process's threads) and
    die with it.
    """
    chunks = [(records[i : i + batch_size], i) for i in range(0, len(records), batch_size)]
    count = min(workers, len(chunks), len(records) // MIN_IMAGES_PER_WORKER)
    if count <= 1:
        cache = ThumbnailCache(cache_root, embedder.image_size) if cache_root else None
        for part, start in chunks:
            yield embed_chunk(embedder, part, start, cache)
        return
    pool = ProcessPoolExecutor(
        count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(embedder.spec(), os.getpid(), str(cache_root) if cache_root else None),
    )
    pending: deque[Future[Chunk]] = deque()
    todo = iter(chunks)
    try:
        for part, start in todo:
            pending.append(_submit(pool, part, start))
            if len(pending) >= count * AHEAD_PER_WORKER:
                break
        while pending:
            chunk = pending.popleft().result()
            for part, start in todo:  # keep the workers busy while the caller writes
                pending.append(_submit(pool, part, start))
                break
            yield chunk
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
