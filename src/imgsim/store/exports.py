"""The original's files (`triplet_features.npy`, `triplet_images.npy`) and our JSON summary:
written from the store at the end of `imgsim extract` / `imgsim index` / `imgsim export --npy`,
read only once, to import a collection made by the original into an empty store."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.config import FEATURES_FILE, IMAGES_FILE, INDEX_META_FILE
from ..core.errors import EmbeddingsNotLoadedError
from ..core.fileio import atomic_path, write_text_atomic
from ..files.filefacts import FileFacts, collect_facts
from .base import CollectionInfo, Item, Store

log = logging.getLogger("imgsim")


def build_collection(
    store: Store,
    features: np.ndarray,
    names: Sequence[str],
    data_dir: str | Path,
    model_id: str,
    facts: Sequence[FileFacts] | None = None,
    kind: str | None = None,
    expected: int | None = None,
) -> CollectionInfo:
    """Make `store` hold exactly these images (one atomic change); `kind` defaults to before."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != len(names):
        raise ValueError("features must be N×D with one name per row")
    data_dir = str(Path(data_dir).resolve())
    if facts is None:
        facts = [f or FileFacts() for f in collect_facts([Path(data_dir) / n for n in names])]
    previous = store.info()
    info = CollectionInfo(
        model_id=model_id,
        dim=int(features.shape[1]),
        data_dir=data_dir,
        kind=kind or (previous.kind if previous else "auto"),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    items = [Item(n, features[i], facts[i]) for i, n in enumerate(names)]
    store.replace_all(items, info, expected)
    return info


def write_exports(store: Store, directory: str | Path) -> int:
    """Write the original's two arrays and triplet_index.json from the store; returns the count."""
    directory = Path(directory)
    info = store.info()
    if info is None:
        return 0
    names: list[str] = []
    parts: list[np.ndarray] = []
    for batch_names, vectors in store.iter_vectors():
        names += batch_names
        parts.append(vectors)
    features = np.concatenate(parts) if parts else np.empty((0, info.dim), dtype=np.float32)
    with atomic_path(directory / FEATURES_FILE) as tmp, open(tmp, "wb") as fh:
        np.save(fh, features)
    with atomic_path(directory / IMAGES_FILE) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.array(names, dtype=str))
    summary = {
        "data_dir": info.data_dir,
        "model_id": info.model_id,
        "embedding_dim": info.dim,
        "count": len(names),
        "created": info.created,
        "kind": info.kind,
        "generation": store.generation(),
        "store": store.address,
    }
    write_text_atomic(directory / INDEX_META_FILE, json.dumps(summary, indent=2) + "\n")
    return len(names)


def exports_current(store: Store, directory: str | Path) -> bool:
    """Whether `directory`'s exports were written from this store at its present generation."""
    try:
        summary = json.loads((Path(directory) / INDEX_META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same_store = summary.get("store") == store.address
    return same_store and summary.get("generation") == store.generation()


def import_original_arrays(store: Store, directory: Path) -> bool:
    """Fill an empty store from the original's arrays, if the workdir has them (once)."""
    features_path, images_path = directory / FEATURES_FILE, directory / IMAGES_FILE
    if store.info() is not None or not (features_path.is_file() and images_path.is_file()):
        return False
    try:
        features = np.load(features_path, allow_pickle=False)
        names = [str(n) for n in np.load(images_path, allow_pickle=False)]
    except (OSError, ValueError) as exc:
        raise EmbeddingsNotLoadedError(f"No embeddings loaded: cannot read them: {exc}") from None
    if features.ndim != 2 or len(features) != len(names):
        raise EmbeddingsNotLoadedError(
            "No embeddings loaded: the feature and name files do not match — run extraction again"
        )
    meta_path = directory / INDEX_META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    data_dir = meta.get("data_dir", "static/dataset")
    log.info("Importing %d embeddings from %s into the index", len(names), features_path.name)
    build_collection(store, features, names, data_dir, str(meta.get("model_id", "")))
    return True
