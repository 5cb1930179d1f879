"""The vector store: one interface, an embedded engine (FAISS + SQLite) and Milvus.

Layer 5: may import `core`, `files`, `images` and `model`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import (
    CollectionInfo,
    ConcurrentChangeError,
    Derived,
    Hit,
    Item,
    ModelMismatchError,
    Store,
    StoreError,
    StoreUnavailableError,
)

ENV_STORE = "IMGSIM_STORE"  # milvus://HOST:PORT, or unset/"faiss" for the embedded store
MILVUS_SCHEME = "milvus://"


def store_spec(spec: str | None = None) -> str:
    """The store to use: `spec`, else IMGSIM_STORE, else the embedded engine ("faiss")."""
    chosen = (spec or os.environ.get(ENV_STORE) or "faiss").strip()
    if chosen != "faiss" and not chosen.startswith(MILVUS_SCHEME):
        raise StoreError(
            f"unknown store {chosen!r}: use 'faiss' (embedded, the default) or milvus://HOST:PORT"
        )
    return chosen


def open_store(
    workdir: str | Path = ".", spec: str | None = None, model_id: str | None = None
) -> Store:
    """Open the store named by `spec` (see `store_spec`); Milvus keeps one collection per model."""
    chosen = store_spec(spec)
    if chosen.startswith(MILVUS_SCHEME):
        from .milvus_store import MilvusStore

        return MilvusStore(chosen, model_id)
    from .exports import import_original_arrays
    from .faiss_store import FaissStore

    store = FaissStore(workdir)
    import_original_arrays(store, Path(workdir))
    return store


__all__ = [
    "ENV_STORE",
    "CollectionInfo",
    "ConcurrentChangeError",
    "Derived",
    "Hit",
    "Item",
    "ModelMismatchError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "open_store",
    "store_spec",
]
