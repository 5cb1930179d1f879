"""FAISS structures: exact (flat) or HNSW by size, keyed by vector id, searched through a mask."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import faiss
import numpy as np

from ..core.fileio import atomic_path

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
    """`hnsw` or `flat` (of the structure inside an id map too)."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"


def default_threads() -> int:
    """CPU cores this process may use: FAISS builds use all of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2


def new_index(dim: int, kind: str) -> faiss.IndexIDMap2:
    """An empty L2 index of the given kind (`flat` or `hnsw`), keyed by vector id."""
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "flat":
        inner = faiss.IndexFlatL2(dim)
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    return faiss.IndexIDMap2(inner)  # FAISS's wrapper keeps `inner` alive beside it


def add_vectors(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    """Add rows under their vector ids."""
    if len(vectors):
        # OpenMP's thread count is per calling thread: set it here, as search may have lowered it.
        faiss.omp_set_num_threads(default_threads())
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        )


def build(vectors: np.ndarray, ids: np.ndarray, kind: str) -> faiss.Index:
    """A new index of `kind` holding `vectors` under `ids`."""
    index = new_index(int(vectors.shape[1]), kind)
    add_vectors(index, vectors, ids)
    return index


def ids_of(index: faiss.Index) -> np.ndarray:
    """The vector ids an index holds."""
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def bitmap(allowed: np.ndarray) -> np.ndarray:
    """Pack a boolean mask over vector ids in the bit order FAISS's IDSelectorBitmap reads."""
    return np.packbits(allowed, bitorder="little")


def search(
    index: faiss.Index, queries: np.ndarray, k: int, bitmap: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Squared L2 distances and vector ids (N×k, -1 where fewer), only ids whose bit is 1."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    faiss.omp_set_num_threads(1 if len(queries) < SMALL_BATCH else default_threads())
    selector = None
    if bitmap is not None:
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))  # n = bytes
    if kind_of(index) == "hnsw":
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
