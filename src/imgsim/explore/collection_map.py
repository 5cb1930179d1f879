"""The collection's map: its projection, kept in the work folder per store generation.

A projection takes minutes on a large collection: it is a KeptDocument, computed in the
background once per change of the collection and read by every server process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..core.config import MAP_FILE, MAP_LOCK_FILE
from ..images.data import category_of
from ..store import Store
from .kept_document import KeptDocument
from .projection import project, stratified_sample, unit_square

T = TypeVar("T")


@dataclass(frozen=True)
class MapSettings:
    """What a map is computed with (SearchConfig's map_* settings)."""

    max_points: int = 5000
    method: str = "tsne"
    seed: int = 0


def compute_map(store: Store, settings: MapSettings) -> dict[str, Any]:
    """The map document of the collection as it is now (labelled with its generation).

    Reads every vector once; the sample is drawn from the names sorted, so the map does not
    depend on the order an engine returns them in.
    """
    generation = store.generation()  # read first: a change during the read makes it stale
    names: list[str] = []
    batches: list[np.ndarray] = []
    for batch_names, vectors in store.iter_vectors():
        names.extend(batch_names)
        batches.append(vectors)
    order = sorted(range(len(names)), key=names.__getitem__)
    names = [names[i] for i in order]
    features = np.concatenate(batches)[order] if batches else np.zeros((0, 2), np.float32)
    categories = [category_of(n) or "" for n in names]
    keep = stratified_sample(categories, settings.max_points, settings.seed)
    xy = unit_square(project(features[keep], settings.method, settings.seed))
    return {
        **_key(store, settings, generation),
        "total_images": len(names),
        "shown": len(keep),
        "categories": dict(sorted(Counter(categories).items())),
        "points": [
            {
                "filename": names[i],
                "category": categories[i],
                "x": round(float(x), 4),
                "y": round(float(y), 4),
            }
            for i, (x, y) in zip(keep, xy, strict=True)
        ],
    }


def _key(store: Store, settings: MapSettings, generation: int) -> dict[str, Any]:
    """What a stored map must match to be current."""
    return {
        "generation": generation,
        "store": store.address,
        "method": settings.method,
        "max_points": settings.max_points,
        "seed": settings.seed,
    }


class CollectionMap(KeptDocument[MapSettings]):
    """The map of one work folder's collection for one process; safe to share across threads."""

    what = "map"
    required = "points"

    def __init__(self, workdir: str | Path) -> None:
        super().__init__(Path(workdir) / MAP_FILE, Path(workdir) / MAP_LOCK_FILE)

    def compute(self, store: Store, settings: MapSettings) -> dict[str, Any]:
        return _on_one_core(compute_map, store, settings)

    def key(self, store: Store, settings: MapSettings, generation: int) -> dict[str, Any]:
        return _key(store, settings, generation)


def _on_one_core(fn: Callable[..., T], *args: Any) -> T:
    # t-SNE's OpenMP loops would take every core; searches keep the others. The limit is
    # OpenMP's per-thread setting, so only this thread is slowed, not the server's requests.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return fn(*args)
