"""FAISS vector structures: exact (flat) or HNSW by size, searched with removed ids masked."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import faiss
import numpy as np

from .fileio import atomic_path

KINDS = ("auto", "flat", "hnsw")

# Exact search scans every vector: measured on one core of the 2-core reference machine
# (docs/benchmarks.md), 128-d top-10 takes 0.6 ms at 50,000 vectors and 1.6 ms at 100,000.
# Up to 50,000 exact search therefore meets the same 1 ms/query goal HNSW has, with perfect
# recall and no graph to build; beyond it, exact time grows linearly and HNSW takes over.
HNSW_MIN_VECTORS = 50_000
HNSW_M = 32  # graph neighbours per node: FAISS's recommended 32 for 128-d
# FAISS's default efConstruction (40) leaves clustered data's graph poorly connected: recall@10
# stalled at 0.97 on 200,000 clustered vectors and 0.87 on 1,000,000 (efSearch 128); 100 gave
# 1.00 on 200,000 for 1.5x the build time (docs/benchmarks.md).
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 128  # candidates per query: recall@10 >= 0.95 with margin (benchmarks)
# One query is ~1 ms of work: OpenMP threads cost more than they save on a busy 2-core machine
# (measured 12 ms instead of 0.08 ms at 10,000 vectors), so small batches run on one thread.
SMALL_BATCH = 32


def resolve_kind(requested: str, count: int) -> str:
    """The structure to build: `flat` or `hnsw` as asked, or by size for `auto`."""
    if requested not in KINDS:
        raise ValueError(f"index kind must be one of {', '.join(KINDS)}, not {requested!r}")
    if requested != "auto":
        return requested
    return "hnsw" if count >= HNSW_MIN_VECTORS else "flat"


def kind_of(index: faiss.Index) -> str:
    """`hnsw` or `flat`."""
    return "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat"


def default_threads() -> int:
    """CPU cores this process may use: FAISS builds use all of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2


def new_index(dim: int, kind: str) -> faiss.Index:
    """An empty L2 index of the given kind (`flat` or `hnsw`)."""
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    if kind == "flat":
        return faiss.IndexFlatL2(dim)
    raise ValueError(f"unknown index kind {kind!r}")


def add_vectors(index: faiss.Index, vectors: np.ndarray) -> None:
    """Append rows to `index`; their ids continue from `index.ntotal`."""
    if len(vectors):
        # OpenMP's thread count is per calling thread: set it here, as search may have lowered it.
        faiss.omp_set_num_threads(default_threads())
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def build(vectors: np.ndarray, kind: str) -> faiss.Index:
    """A new index of `kind` holding `vectors` with ids 0..N-1."""
    index = new_index(int(vectors.shape[1]), kind)
    add_vectors(index, vectors)
    return index


def live_bitmap(live: np.ndarray) -> np.ndarray:
    """Pack a boolean live-mask in the bit order FAISS's IDSelectorBitmap reads."""
    return np.packbits(live, bitorder="little")


def search(
    index: faiss.Index, queries: np.ndarray, k: int, bitmap: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Squared L2 distances and ids (N×k, -1 where fewer), skipping ids whose bit is 0."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    faiss.omp_set_num_threads(1 if len(queries) < SMALL_BATCH else default_threads())
    selector = None
    if bitmap is not None:
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))  # n = bytes
    if isinstance(index, faiss.IndexHNSW):
        # Explicit parameters replace the index's own, so efSearch is set here too.
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
    else:
        params = faiss.SearchParameters(sel=selector)
    # faiss.contrib.torch_utils (imported by pytorch-metric-learning) swaps in a `search` that
    # takes no `params`; it keeps FAISS's own as `search_numpy`.
    squared, ids = getattr(index, "search_numpy", index.search)(queries, k, params=params)
    squared[ids < 0] = np.inf
    return squared, ids


def serialize(index: faiss.Index) -> tuple[np.ndarray, int]:
    """FAISS's file bytes of `index` and their CRC-32 (which names this checkpoint)."""
    data = faiss.serialize_index(index)
    return data, zlib.crc32(memoryview(data))


def write_file(path: str | Path, data: np.ndarray) -> None:
    """Write serialised index bytes atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(memoryview(data))


def read_file(path: str | Path) -> tuple[faiss.Index, int] | None:
    """The index in a FAISS file and the CRC-32 of its bytes, or None if it is absent or bad."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
        return faiss.deserialize_index(data), zlib.crc32(memoryview(data))
    except (OSError, RuntimeError, ValueError):
        return None
