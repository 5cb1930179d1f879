"""The collection's map: its projection, kept in the work folder per store generation.

A projection takes minutes on a large collection, so no request computes one: the first
request after a change starts a background thread (one process at a time, through a lock
file) and gets the previous map, marked stale, or none yet; the next requests get the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .config import MAP_FILE, MAP_LOCK_FILE
from .data import category_of
from .fileio import atomic_path
from .projection import project, stratified_sample, unit_square
from .store import Store

log = logging.getLogger("imgsim")
T = TypeVar("T")


@dataclass(frozen=True)
class MapSettings:
    """What a map is computed with (SearchConfig's map_* settings)."""

    max_points: int = 5000
    method: str = "tsne"
    seed: int = 0


@dataclass(frozen=True)
class MapState:
    """What a caller gets now: the map (None before the first), whether it is current,
    whether a newer one is being computed, and why the last try failed ('' if it did not)."""

    document: dict[str, Any] | None
    current: bool
    computing: bool
    error: str = ""


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


def write_map(document: dict[str, Any], path: str | Path) -> None:
    """Write a map document atomically: a reader sees the old map or the new, never half."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def read_map(path: str | Path) -> dict[str, Any] | None:
    """A stored map document, or None when there is none (or it cannot be read)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and "points" in document else None


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    # Server processes share the work folder: one computes, the others wait for its file.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:  # not an output: an empty lock file
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class CollectionMap:
    """The map of one work folder's collection for one process; safe to share across threads."""

    def __init__(self, workdir: str | Path) -> None:
        self.path = Path(workdir) / MAP_FILE
        self.lock_path = Path(workdir) / MAP_LOCK_FILE
        self._lock = threading.Lock()
        self._document: dict[str, Any] | None = None  # the newest map this process has seen
        self._file_stamp: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._failed: tuple[dict[str, Any], str] | None = None  # (key, message)

    def current(self, store: Store, settings: MapSettings) -> MapState:
        """The map now; starts computing a new one in the background when it is not current."""
        key = _key(store, settings, store.generation())
        with self._lock:
            self._reread()
            if self._document is not None and _matches(self._document, key):
                return MapState(self._document, current=True, computing=False)
            if self._failed is not None and self._failed[0] == key:
                return MapState(self._document, False, False, self._failed[1])
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(store, settings, key), name="imgsim-map", daemon=True
                )
                self._thread.start()
            return MapState(self._document, current=False, computing=True)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a computation in progress to end (for tests and scripts)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _reread(self) -> None:
        # Another process may have written a newer map; parse the file only when it changed.
        try:
            stat = self.path.stat()
        except OSError:
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._file_stamp:
            document = read_map(self.path)
            if document is not None:
                self._document, self._file_stamp = document, stamp

    def _run(self, store: Store, settings: MapSettings, key: dict[str, Any]) -> None:
        try:
            with _exclusive(self.lock_path):
                document = read_map(self.path)  # another process may just have made it
                if document is None or not _matches(document, key):
                    document = _on_one_core(compute_map, store, settings)
                    write_map(document, self.path)
                    log.info("Computed the map of %d images", document["shown"])
            with self._lock:
                self._document, self._failed = document, None
        except Exception as exc:  # reported by the next request; retried after a change
            log.exception("Cannot compute the map")
            with self._lock:
                self._failed = (key, f"cannot compute the map: {exc}")
        finally:
            with self._lock:
                self._thread = None


def _on_one_core(fn: Callable[..., T], *args: Any) -> T:
    # t-SNE's OpenMP loops would take every core; searches keep the others. The limit is
    # OpenMP's per-thread setting, so only this thread is slowed, not the server's requests.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return fn(*args)


def _matches(document: dict[str, Any], key: dict[str, Any]) -> bool:
    return all(document.get(k) == v for k, v in key.items())
