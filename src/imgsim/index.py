"""The searchable collection: embeddings in a FAISS index, with their file names and categories."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import FEATURES_FILE, IMAGES_FILE, INDEX_META_FILE
from .data import category_of
from .errors import EmbeddingsNotLoadedError
from .fileio import atomic_path, write_text_atomic


@dataclass
class IndexMeta:
    """What the index was built from; written beside the arrays."""

    data_dir: str
    model_id: str
    embedding_dim: int
    count: int
    created: str


class EmbeddingIndex:
    """Exact nearest-neighbour search over L2-normalised embeddings (FAISS flat L2)."""

    def __init__(self, features: np.ndarray, names: list[str], meta: IndexMeta) -> None:
        import faiss

        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != len(names):
            raise ValueError("features must be N×D with one name per row")
        self.names = list(names)
        self.categories = [category_of(n) or "" for n in self.names]
        self.meta = meta
        self._position = {n: i for i, n in enumerate(self.names)}
        self._index = faiss.IndexFlatL2(features.shape[1])
        self._index.add(features)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def __contains__(self, name: str) -> bool:
        return name in self._position

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Euclidean distances (N×k, ascending) and row positions (N×k, -1 where fewer)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, len(self)))
        squared, positions = self._index.search(queries, k)
        return np.sqrt(np.maximum(squared, 0.0)), positions


def save_index(
    directory: str | Path, features: np.ndarray, names: list[str], data_dir: str, model_id: str
) -> IndexMeta:
    """Write the original's arrays and the index description, each file atomically."""
    directory = Path(directory)
    features = np.ascontiguousarray(features, dtype=np.float32)
    meta = IndexMeta(
        data_dir=str(Path(data_dir).resolve()),
        model_id=model_id,
        embedding_dim=int(features.shape[1]) if features.ndim == 2 else 0,
        count=len(names),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    with atomic_path(directory / FEATURES_FILE) as tmp, open(tmp, "wb") as fh:
        np.save(fh, features)
    with atomic_path(directory / IMAGES_FILE) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.array(names, dtype=str))
    # Written last: its model_id and count tell a reader whether the arrays belong together.
    write_text_atomic(directory / INDEX_META_FILE, json.dumps(meta.__dict__, indent=2) + "\n")
    return meta


def load_index(directory: str | Path) -> EmbeddingIndex:
    """Load the embeddings written by `save_index` (or by the original's two .npy files)."""
    directory = Path(directory)
    features_path, images_path = directory / FEATURES_FILE, directory / IMAGES_FILE
    if not features_path.is_file() or not images_path.is_file():
        raise EmbeddingsNotLoadedError(
            f"No embeddings loaded: {features_path.name} / {images_path.name} not found in "
            f"{directory} — run extraction first (imgsim extract)"
        )
    try:
        features = np.load(features_path, allow_pickle=False)
        names = [str(n) for n in np.load(images_path, allow_pickle=False)]
    except (OSError, ValueError) as exc:
        raise EmbeddingsNotLoadedError(f"No embeddings loaded: cannot read them: {exc}") from None
    meta_path = directory / INDEX_META_FILE
    if meta_path.is_file():
        meta = IndexMeta(**json.loads(meta_path.read_text(encoding="utf-8")))
    else:
        meta = IndexMeta("static/dataset", "", int(features.shape[-1]), len(names), "")
    if features.ndim != 2 or len(features) != len(names) or len(names) != meta.count:
        raise EmbeddingsNotLoadedError(
            "No embeddings loaded: the feature and name files do not match — run extraction again"
        )
    return EmbeddingIndex(features, names, meta)
