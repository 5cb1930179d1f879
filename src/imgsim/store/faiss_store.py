"""The embedded engine: the SQLite database is the truth, a FAISS index its per-process cache.

Every process (each server worker, the CLI) holds its own FAISS index of the database's
vectors. Before each search it reads the database's generation; when another process has
committed a change, it reads only that change (rows with newer ids, the `removed` log) and
applies it, so every committed change is seen by the next search anywhere. Rebuilds (HNSW at
50,000 images, compaction once a quarter of the vectors are dead) run in a background thread
while searches use the old structure, then swap in. The FAISS file on disk is only a
start-up cache: any process may write it; a loader adopts it if the database names its CRC
and reconciles it with the rows, so a stale or missing file costs time, never correctness.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np

from ..core.config import FAISS_INDEX_FILE, MANIFEST_FILE
from ..core.errors import storage_error
from ..core.names import category_of
from ..files.filefacts import FileFacts
from . import vectors as vx
from .base import CollectionInfo, Derived, Hit, Item, ModelMismatchError, Store
from .database import (
    Database,
    delete_derived,
    delete_paths,
    generation_of,
    insert_rows,
    meta_of,
    put_derived_rows,
    put_meta,
    read_derived,
    snapshot,
)

log = logging.getLogger("imgsim")

# Removed images leave dead vectors that searches mask; past this share a rebuild drops them.
COMPACT_FRACTION = 0.25
# The FAISS cache file is rewritten in the background once this many vectors differ from it.
CACHE_LAG = 1000
# A category filter that keeps fewer vectors than this share is searched exactly over those
# vectors: an HNSW graph walk that must skip most nodes loses recall and time.
EXACT_FILTER_FRACTION = 0.05


class FaissStore(Store):
    """The collection in `workdir`'s SQLite database, searched through an in-memory FAISS index."""

    def __init__(self, workdir: str | Path, background: bool = True) -> None:
        self.workdir = Path(workdir)
        self.address = str(self.workdir / MANIFEST_FILE)
        self.db = Database(self.workdir / MANIFEST_FILE)
        self._background = background
        self._lock = threading.RLock()  # the in-memory state: searches vs a catch-up or swap
        self._index: faiss.Index | None = None
        self._names: dict[int, tuple[str, str]] = {}  # vector id → (name, category)
        self._ids: dict[str, int] = {}
        self._dead: set[int] = set()  # in the FAISS index but removed from the database
        self._gen = -1  # the database generation the in-memory state reflects
        self._base = 0  # the generation of the last full replacement
        self._max_id = 0
        self._info: CollectionInfo | None = None
        self._masks: dict[frozenset[str] | None, tuple] = {}
        self._counts: tuple[int, dict[str, int]] | None = None  # (generation, per category)
        self._uncached = 0  # vectors added or removed since the FAISS file on disk was written
        self._worker: threading.Thread | None = None

    # -- reading ------------------------------------------------------------------------
    def info(self) -> CollectionInfo | None:
        self._sync()
        return self._info

    def generation(self) -> int:
        return self.db.generation()

    def count(self) -> int:
        self._sync()
        return len(self._ids)

    def categories(self) -> dict[str, int]:
        self._sync()
        with self._lock:
            # Asked on every filtered search and browsed page: counted once per state.
            if self._counts is None or self._counts[0] != self._gen:
                counts: dict[str, int] = {}
                for _, category in self._names.values():
                    counts[category] = counts.get(category, 0) + 1
                self._counts = (self._gen, dict(sorted(counts.items())))
            return dict(self._counts[1])

    def contains(self, name: str) -> bool:
        self._sync()
        return name in self._ids

    def names(self) -> list[str]:
        """Every image's name, by vector id."""
        self._sync()
        with self._lock:
            return [self._names[i][0] for i in sorted(self._names)]

    def facts(self) -> dict[str, FileFacts]:
        rows = self.db.query(
            "SELECT path, size, mtime_ns, sha256, ctime_ns, inode FROM images ORDER BY vector_id"
        )
        return {p: FileFacts(s, m, h, c, i) for p, s, m, h, c, i in rows}

    def vector_with_hash(self, sha256: str) -> np.ndarray | None:
        if not sha256:
            return None
        rows = self.db.query("SELECT vector FROM images WHERE sha256 = ? LIMIT 1", (sha256,))
        return np.frombuffer(rows[0][0], dtype=np.float32).copy() if rows else None

    def vectors_of(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        wanted = list(dict.fromkeys(names))
        for start in range(0, len(wanted), 500):  # SQLite's bound on parameters
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.query(f"SELECT path, vector FROM images WHERE path IN ({marks})", chunk)
            found.update((p, np.frombuffer(v, dtype=np.float32).copy()) for p, v in rows)
        return found

    def list_images(
        self, category: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[tuple[str, str]]:
        # Both orders walk an index ((category, path) or path's own): a deep page skips index
        # entries only, never table rows or vectors (benchmarks/browse_speed.py times it).
        if category is None:
            sql, args = "SELECT path, category FROM images ORDER BY path", []
        else:
            sql = "SELECT path, category FROM images WHERE category = ? ORDER BY path"
            args = [category]
        rows = self.db.query(sql + " LIMIT ? OFFSET ?", [*args, max(0, limit), max(0, offset)])
        return [(p, c) for p, c in rows]

    def iter_vectors(self, batch: int = 10_000) -> Iterator[tuple[list[str], np.ndarray]]:
        last = 0
        dim = self._dim()
        while True:
            rows = self.db.query(
                "SELECT vector_id, path, vector FROM images WHERE vector_id > ? "
                "ORDER BY vector_id LIMIT ?",
                (last, batch),
            )
            if not rows:
                return
            last = rows[-1][0]
            data = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32)
            yield [r[1] for r in rows], data.reshape(len(rows), dim).copy()

    def _dim(self) -> int:
        info = self.info()
        return info.dim if info else 0

    def search(
        self, queries: np.ndarray, k: int, categories: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        self._sync()
        with self._lock:
            if self._index is None or not self._ids:
                return [[] for _ in range(len(queries))]
            wanted = frozenset(categories) if categories else None
            total, mask, ids = self._filter(wanted)
            if total == 0:
                return [[] for _ in range(len(queries))]
            k = max(1, min(k, total))
            if ids is not None and total < EXACT_FILTER_FRACTION * self._index.ntotal:
                squared, found = self._exact(queries, k, ids)
            else:
                squared, found = vx.search(self._index, queries, k, mask)
            distances = np.sqrt(np.maximum(squared, 0.0))
            return [
                [
                    Hit(*self._names[int(i)], float(d))
                    for d, i in zip(ds, row, strict=True)
                    if i >= 0
                ]
                for ds, row in zip(distances, found, strict=True)
            ]

    def _filter(
        self, wanted: frozenset[str] | None
    ) -> tuple[int, np.ndarray | None, np.ndarray | None]:
        """(images allowed, FAISS bitmap over vector ids, their ids); None, None: all of them.

        Built once per state and category set: a search costs no pass over the collection.
        """
        if wanted not in self._masks:
            if wanted is None and not self._dead:
                self._masks[None] = (len(self._ids), None, None)
            else:
                if len(self._masks) > 64:  # categories come from requests: bound the cache
                    self._masks.clear()
                chosen = [i for i, (_, c) in self._names.items() if wanted is None or c in wanted]
                ids = np.array(sorted(chosen), dtype=np.int64)
                allowed = np.zeros(self._max_id + 1, dtype=bool)
                allowed[ids] = True
                self._masks[wanted] = (len(ids), vx.bitmap(allowed), ids)
        return self._masks[wanted]

    def _exact(self, queries: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._index is not None
        vectors = self._index.reconstruct_batch(ids.astype(np.int64))
        squared, rows = faiss.knn(np.ascontiguousarray(queries, dtype=np.float32), vectors, k)
        return squared, np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)

    # -- catching up with the database ---------------------------------------------------
    def _sync(self) -> None:
        """Apply what other processes (and this one) committed since the state was read."""
        generation = self.db.generation()
        if generation == self._gen:
            return
        with self._lock:
            if self.db.generation() == self._gen:
                return
            with snapshot(self.db):
                meta = self.db.meta()
                generation, base = int(meta.get("generation", 0)), int(meta.get("base", 0))
                self._info = _info_from(meta)
                if self._index is None or self._gen < base or self._gen < 0:
                    self._load(meta)
                else:
                    self._catch_up()
                self._gen, self._base = generation, base
            self._masks.clear()
        self._maybe_maintain()

    def _catch_up(self) -> None:
        assert self._index is not None and self._info is not None
        for vid in self.db.removed_since(self._gen):
            if vid in self._names:
                del self._ids[self._names.pop(vid)[0]]
                self._dead.add(vid)
                self._uncached += 1
        rows = self.db.rows(self._max_id)
        if rows:
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vx.add_vectors(self._index, self.db.vectors_of(ids.tolist(), self._info.dim), ids)
            self._adopt_rows(rows)
            self._uncached += len(rows)

    def _adopt_rows(self, rows: list[tuple[int, str, str]]) -> None:
        for vid, path, category in rows:
            old = self._ids.get(path)
            if old is not None:  # replaced: the old vector is dead
                self._names.pop(old, None)
                self._dead.add(old)
            self._names[vid], self._ids[path] = (path, category), vid
            self._max_id = max(self._max_id, vid)

    def _load(self, meta: dict) -> None:
        """The whole state: the cache file where the database accepts it, reconciled."""
        self._names, self._ids, self._dead, self._max_id = {}, {}, set(), 0
        info = self._info
        if info is None:
            self._index = None
            return
        rows = self.db.rows(0)
        index = self._read_cache(meta, info.dim)
        live = np.array([r[0] for r in rows], dtype=np.int64)
        if index is None:
            kind = vx.resolve_kind(info.kind, len(rows))
            # A missing HNSW cache would make start-up wait for the graph: start exact and
            # let the background thread build the graph.
            index = vx.new_index(info.dim, "flat" if kind == "hnsw" else kind)
        held = vx.ids_of(index)
        missing = np.setdiff1d(live, held, assume_unique=True)
        vx.add_vectors(index, self.db.vectors_of(missing.tolist(), info.dim), missing)
        self._dead = set(np.setdiff1d(held, live, assume_unique=True).tolist())
        self._uncached = len(missing) + len(self._dead)
        self._index = index
        self._adopt_rows(rows)

    def _read_cache(self, meta: dict, dim: int) -> faiss.Index | None:
        found = vx.read_file(self.workdir / FAISS_INDEX_FILE)
        accepted = meta.get("cache", {})
        if found is None:
            return None
        index, crc = found
        if str(crc) not in accepted or index.d != dim or not isinstance(index, faiss.IndexIDMap):
            return None
        return index

    # -- maintenance, off the request path -------------------------------------------------
    def _wanted_kind(self) -> str:
        info = self._info
        requested = info.kind if info else "auto"
        if requested != "auto" or self._index is None:
            return vx.resolve_kind(requested, len(self._ids))
        # Halfway back down before returning to flat, so a size near the line never flip-flops.
        if vx.kind_of(self._index) == "hnsw" and len(self._ids) >= vx.HNSW_MIN_VECTORS // 2:
            return "hnsw"
        return vx.resolve_kind("auto", len(self._ids))

    def _maintenance_due(self) -> str:
        """Why a rebuild is due ('' when none): dead vectors or another structure wanted."""
        if self._index is None:
            return ""
        if len(self._dead) > COMPACT_FRACTION * max(1, self._index.ntotal):
            return "compact"
        if self._wanted_kind() != vx.kind_of(self._index):
            return "kind"
        if self._uncached >= CACHE_LAG:
            return "cache"
        return ""

    def _maybe_maintain(self) -> None:
        with self._lock:
            reason = self._maintenance_due()
            if not reason or (self._worker is not None and self._worker.is_alive()):
                return
            if not self._background:
                self._maintain(reason)
                return
            self._worker = threading.Thread(
                target=self._maintain, args=(reason,), name="imgsim-index", daemon=True
            )
            self._worker.start()

    def _maintain(self, reason: str) -> None:
        try:
            if reason == "cache":
                self.flush()
            else:
                self.rebuild()
        except Exception:  # a background failure must not kill the server; searches go on
            log.exception("index maintenance (%s) failed; searches use the previous index", reason)

    def rebuild(self) -> None:
        """Build a fresh structure from the database (no dead vectors), then swap it in."""
        start = time.perf_counter()
        with snapshot(self.db):
            meta = self.db.meta()
            info, generation = _info_from(meta), int(meta.get("generation", 0))
            rows = self.db.rows(0)
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vectors = self.db.vectors_of(ids.tolist(), info.dim) if info else None
        if info is None or vectors is None:
            return
        kind = vx.resolve_kind(info.kind, len(rows))
        with self._lock:
            if self._index is not None and info.kind == "auto":
                kind = self._wanted_kind()
        built = vx.build(vectors, ids, kind)  # the slow part, outside every lock
        with self._lock:
            if int(meta.get("base", 0)) != self._base and self._gen >= 0:
                return  # replaced meanwhile: the next search reloads instead
            self._index, self._names, self._ids = built, {}, {}
            self._dead, self._max_id, self._gen = set(), 0, generation
            self._uncached = len(rows)  # a new structure: the file on disk is not it
            self._info, self._masks = info, {}
            self._adopt_rows(rows)
        log.info(
            "Built the %s index of %d images in %.1fs", kind, len(rows), time.perf_counter() - start
        )
        self._sync()  # what was committed while it was built
        self.flush()

    def flush(self) -> None:
        """Write the FAISS cache file if it differs from the in-memory index."""
        self._sync()
        with self._lock:
            if self._index is None or not self._uncached:
                return
            data, crc = vx.serialize(self._index)
            held, written = self._index.ntotal, self._uncached
        accepted = dict(list(self.db.meta().get("cache", {}).items())[-2:])
        accepted[str(crc)] = held
        try:
            # Named before it is written: a crash in between leaves a name without a file.
            self.db.set_meta({"cache": accepted})
            vx.write_file(self.workdir / FAISS_INDEX_FILE, data)
        except (OSError, sqlite3.Error) as exc:
            if storage_error(exc, "") is None:
                raise
            # Only a start-up cache: a full disk or a read-only folder costs the next start
            # time, never correctness. Not retried until the index changes again.
            log.warning("The index's start-up cache was not written: %s", exc)
        with self._lock:
            self._uncached -= written  # changes caught up meanwhile are still to be written

    def wait(self) -> None:
        """Wait for a background rebuild (tests and the CLI)."""
        worker = self._worker
        if worker is not None:
            worker.join()

    # -- writing ---------------------------------------------------------------------------
    def remove(self, names: Iterable[str], expected: int | None = None) -> list[str]:
        names = list(dict.fromkeys(names))
        if not names:
            return []
        with self.db.transaction(expected) as conn:
            generation = generation_of(conn)
            removed = delete_paths(conn, names, generation)
            delete_derived(conn, removed)
        self._sync()
        return removed

    def apply(
        self,
        add: Sequence[Item],
        remove: Iterable[str],
        touch: dict[str, FileFacts],
        model_id: str,
        expected: int | None = None,
        data_dir: str | None = None,
    ) -> int:
        if len({a.name for a in add}) != len(add):
            raise ValueError("each image may be added once per change")
        remove = list(remove)  # read twice: the images and their derived data
        with self.db.transaction(expected) as conn:
            generation = generation_of(conn)
            info = _info_from(meta_of(conn))
            vectors = _stack(add, info.dim if info else None)
            _check_model(info, model_id, vectors.shape[1] if len(add) else None, self.address)
            delete_paths(conn, [*remove, *(a.name for a in add)], generation)
            rows = [(a.name, category_of(a.name) or "", a.facts, model_id) for a in add]
            insert_rows(conn, rows, vectors)
            delete_derived(conn, remove)
            put_derived_rows(conn, {a.name: a.derived for a in add if a.derived is not None})
            conn.executemany(
                "UPDATE images SET size = ?, mtime_ns = ?, sha256 = ?, ctime_ns = ?, inode = ? "
                "WHERE path = ?",
                ((f.size, f.mtime_ns, f.sha256, f.ctime_ns, f.inode, p) for p, f in touch.items()),
            )
            if data_dir is not None:
                put_meta(conn, {"data_dir": data_dir})
        self._sync()
        return generation

    def replace_all(
        self, items: Sequence[Item], info: CollectionInfo, expected: int | None = None
    ) -> int:
        vectors = _stack(items, info.dim)
        with self.db.transaction(expected) as conn:
            generation = generation_of(conn)
            conn.execute("DELETE FROM images")
            conn.execute("DELETE FROM removed")
            rows = [(a.name, category_of(a.name) or "", a.facts, info.model_id) for a in items]
            insert_rows(conn, rows, vectors)
            # Derived data of images kept stays (it is checked against each file's stat).
            conn.execute("DELETE FROM derived WHERE path NOT IN (SELECT path FROM images)")
            put_derived_rows(conn, {a.name: a.derived for a in items if a.derived is not None})
            put_meta(conn, {
                "schema": 2, "model_id": info.model_id, "dim": info.dim,
                "data_dir": info.data_dir, "kind": info.kind, "created": info.created,
                "base": generation, "cache": {},
            })  # fmt: skip
        self._sync()
        return generation

    def derived(
        self, names: Sequence[str] | None = None, thumbs: bool = False
    ) -> dict[str, Derived]:
        return read_derived(self.db, names, thumbs)

    def put_derived(self, rows: dict[str, Derived]) -> None:
        if rows:
            with self.db.bookkeeping() as conn:
                put_derived_rows(conn, rows)

    def set_kind(self, kind: str) -> None:
        vx.resolve_kind(kind, 0)  # checks the name
        with self.db.transaction() as conn:
            put_meta(conn, {"kind": kind})
        self._sync()

    def close(self) -> None:
        self.wait()
        self.db.close()


def _info_from(meta: dict) -> CollectionInfo | None:
    if "model_id" not in meta or "dim" not in meta:
        return None
    return CollectionInfo(
        str(meta["model_id"]), int(meta["dim"]), str(meta.get("data_dir", "")),
        str(meta.get("kind", "auto")), str(meta.get("created", "")),
    )  # fmt: skip


def _stack(items: Sequence[Item], dim: int | None) -> np.ndarray:
    if not items:
        return np.empty((0, dim or 0), dtype=np.float32)
    return np.stack([np.asarray(a.vector, dtype=np.float32).reshape(-1) for a in items])


def _check_model(info: CollectionInfo | None, model_id: str, dim: int | None, where: str) -> None:
    if info is None:
        raise ModelMismatchError(f"{where} holds no collection yet: build it first (imgsim index)")
    if model_id and info.model_id and model_id != info.model_id:
        raise ModelMismatchError(
            f"These embeddings come from model {model_id} but the index holds model "
            f"{info.model_id}'s — rebuild it with that model: imgsim index"
        )
    if dim is not None and dim != info.dim:
        raise ModelMismatchError(
            f"These embeddings have {dim} dimensions, the index {info.dim} — rebuild it: "
            "imgsim index"
        )
