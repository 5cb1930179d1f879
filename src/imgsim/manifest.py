"""The SQLite manifest: one row per indexed image — file facts, content hash, vector id, model."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImgsimError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    path TEXT PRIMARY KEY,       -- relative to the data folder, '/'-separated
    category TEXT NOT NULL,      -- '' when the name has none
    size INTEGER,                -- bytes; NULL when the file was never seen (vectors imported)
    mtime_ns INTEGER,            -- modification time in nanoseconds
    sha256 TEXT,                 -- of the file's bytes: unchanged content is never re-embedded
    vector_id INTEGER NOT NULL,  -- its row in the FAISS index
    model_id TEXT NOT NULL,      -- the model file that embedded it
    vector BLOB NOT NULL         -- float32 × dim: the FAISS file can always be rebuilt from these
);
CREATE INDEX IF NOT EXISTS images_vector_id ON images (vector_id);
CREATE INDEX IF NOT EXISTS images_sha256 ON images (sha256);
"""


class StaleIndexError(ImgsimError, RuntimeError):
    """Another process changed the index since this one loaded it; writing would corrupt it."""


@dataclass(frozen=True)
class FileFacts:
    """What a file was when it was embedded; another size or time means: hash it again."""

    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None

    def same_stat(self, other: FileFacts) -> bool:
        """Same size and modification time (unknown facts never match)."""
        return self.size is not None and (self.size, self.mtime_ns) == (other.size, other.mtime_ns)


def stat_facts(path: Path) -> FileFacts:
    """Size and modification time only: cheap enough to check every file on each update."""
    st = path.stat()
    return FileFacts(st.st_size, st.st_mtime_ns)


def file_facts(path: Path) -> FileFacts | None:
    """Size, modification time and SHA-256 of a file, or None if it cannot be read.

    The stat is taken before the bytes are read: a file that changes meanwhile shows a new stat
    on the next update and is hashed (and embedded) again, never remembered with a stale hash.
    """
    try:
        st = path.stat()
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None
    return FileFacts(st.st_size, st.st_mtime_ns, digest)


def collect_facts(paths: Sequence[Path], workers: int = 2) -> list[FileFacts | None]:
    """`file_facts` of many files, in threads (hashlib releases the GIL while it hashes)."""
    if len(paths) < 2:
        return [file_facts(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(file_facts, paths))


@dataclass(frozen=True)
class Entry:
    """One image's row, without its vector (vectors travel as one float32 array)."""

    path: str
    category: str
    facts: FileFacts
    vector_id: int
    model_id: str


class Manifest:
    """The manifest file, opened once and shared by threads (each method holds its lock).

    WAL journal mode: a commit costs one fsync, and readers in other processes never wait
    for a writer. Every write method is one transaction: a crash leaves all of it or none.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a committed change survives a power cut
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def _transaction(self, generation: int | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction; with `generation`, only if the manifest is still at it."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")  # the write lock: other processes' writers wait
            try:
                _check_generation(conn, generation, self.path)
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def close(self) -> None:
        """Close the connection (SQLite then folds its write-ahead log into the file)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def meta(self) -> dict[str, Any]:
        """The index's settings and bookkeeping (model id, dimension, kind, generation, …)."""
        return {k: json.loads(v) for k, v in self._query("SELECT key, value FROM meta")}

    def entries(self) -> list[tuple[str, str, int]]:
        """(path, category, vector id) of every image, by vector id."""
        return self._query("SELECT path, category, vector_id FROM images ORDER BY vector_id")

    def facts(self) -> dict[str, FileFacts]:
        """The recorded file facts of every image, by path."""
        rows = self._query("SELECT path, size, mtime_ns, sha256 FROM images")
        return {p: FileFacts(s, m, h) for p, s, m, h in rows}

    def vectors(self, dim: int, min_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Vector ids (≥ `min_id`, ascending) and their vectors (N×dim float32)."""
        rows = self._query(
            "SELECT vector_id, vector FROM images WHERE vector_id >= ? ORDER BY vector_id",
            (min_id,),
        )
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        data = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        return ids, data.reshape(len(rows), dim)

    def vector_with_hash(self, sha256: str, dim: int) -> np.ndarray | None:
        """The vector of an image whose file had this content hash, if any."""
        rows = self._query("SELECT vector FROM images WHERE sha256 = ? LIMIT 1", (sha256,))
        return np.frombuffer(rows[0][0], dtype=np.float32).reshape(dim) if rows else None

    def check_generation(self, generation: int) -> None:
        """Raise StaleIndexError unless the manifest is at `generation`."""
        with self._transaction(generation):
            pass

    def set_meta(self, values: Mapping[str, Any], generation: int | None = None) -> None:
        """Change some settings, in one transaction (see `apply` for `generation`)."""
        with self._transaction(generation) as conn:
            _put_meta(conn, values)

    def replace_all(
        self,
        entries: Sequence[Entry],
        vectors: np.ndarray,
        meta: Mapping[str, Any],
        generation: int | None = None,
    ) -> None:
        """Make the manifest hold exactly these images and settings, in one transaction."""
        with self._transaction(generation) as conn:
            conn.execute("DELETE FROM images")
            conn.execute("DELETE FROM meta")
            _insert(conn, entries, vectors)
            _put_meta(conn, {"schema": SCHEMA_VERSION, **meta})

    def apply(
        self,
        insert: Sequence[Entry],
        vectors: np.ndarray,
        delete: Iterable[str],
        touch: Mapping[str, FileFacts],
        meta: Mapping[str, Any],
        generation: int | None = None,
    ) -> None:
        """Delete rows, insert rows, update file facts and settings, in one transaction.

        With `generation`, the change is refused (StaleIndexError) unless the manifest is
        still at that generation: a writer's in-memory index must be what is on disk.
        """
        with self._transaction(generation) as conn:
            conn.executemany("DELETE FROM images WHERE path = ?", ((p,) for p in delete))
            _insert(conn, insert, vectors)
            conn.executemany(
                "UPDATE images SET size = ?, mtime_ns = ?, sha256 = ? WHERE path = ?",
                ((f.size, f.mtime_ns, f.sha256, p) for p, f in touch.items()),
            )
            _put_meta(conn, meta)


def _insert(conn: sqlite3.Connection, entries: Sequence[Entry], vectors: np.ndarray) -> None:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    conn.executemany(
        "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (e.path, e.category, e.facts.size, e.facts.mtime_ns, e.facts.sha256, e.vector_id,
             e.model_id, vectors[i].tobytes())
            for i, e in enumerate(entries)
        ),
    )  # fmt: skip


def _check_generation(conn: sqlite3.Connection, expected: int | None, path: Path) -> None:
    if expected is None:
        return
    row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    found = json.loads(row[0]) if row else None
    if found != expected:
        raise StaleIndexError(
            f"{path} was changed by another process (generation {found}, this one has "
            f"{expected}): load the index again (restart the server) and retry"
        )


def _put_meta(conn: sqlite3.Connection, values: Mapping[str, Any]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        ((k, json.dumps(v)) for k, v in values.items()),
    )
