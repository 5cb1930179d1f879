"""The embedded store's SQLite database: names, file facts, categories and vectors, together.

It is the one source of truth of the embedded engine. Every change is one transaction that
bumps `generation`; vector ids come from AUTOINCREMENT and are never reused, so a process
that holds an older copy can catch up from the rows added after its newest id and the
`removed` log, without reading the whole table.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ReadOnlyError, storage_error
from ..files.filefacts import FileFacts
from .base import ConcurrentChangeError, Derived, StoreError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    vector_id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: caches catch up by id
    path TEXT NOT NULL UNIQUE,   -- relative to the data folder, '/'-separated
    category TEXT NOT NULL,      -- '' when the name has none
    size INTEGER,                -- bytes (NULL when the file was never seen: vectors imported)
    mtime_ns INTEGER,
    ctime_ns INTEGER,
    inode INTEGER,
    sha256 TEXT,                 -- of the file's bytes: unchanged content is never re-embedded
    model_id TEXT NOT NULL,      -- the model file that embedded it
    vector BLOB NOT NULL         -- float32 × dim
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images (sha256);
CREATE INDEX IF NOT EXISTS images_category ON images (category);
-- Browsing one category by name pages through this index, never the table.
CREATE INDEX IF NOT EXISTS images_category_path ON images (category, path);
-- What the duplicate finder derived from each file (store/base.py, Derived), by image name:
-- a cache of the files beside their vectors, rewritten without a new generation.
CREATE TABLE IF NOT EXISTS derived (
    path TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    summary BLOB NOT NULL,
    thumb BLOB NOT NULL,
    views BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS removed (
    vector_id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL  -- the change that removed it
);
"""

_COLUMNS = "path, category, size, mtime_ns, ctime_ns, inode, sha256, model_id, vector"


class Database:
    """One connection shared by the threads of a process (each method holds its lock).

    WAL journal mode: readers in other processes never wait for a writer, and a commit costs
    one fsync. Writers of all processes take turns through SQLite's write lock.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._writes = 0  # write transactions begun on this connection
        # (data_version, _writes, generation) when the generation was last read from the table
        self._known: tuple[int, int, int] | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")  # a committed change survives a power cut
                _migrate(conn)
                conn.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                conn.close()
                if not isinstance(storage_error(exc, ""), ReadOnlyError) or not self.path.is_file():
                    raise StoreError(f"cannot use {self.path}: {exc}") from None
                conn = self._read_only()  # a read-only work folder: searching still works
            self._conn = conn
        return self._conn

    def _read_only(self) -> sqlite3.Connection:
        """The database opened for reading only; writes on it fail as read-only (503).

        SQLite reads a WAL database through its -shm file, which it cannot create in a
        folder it may not write: then the file is opened as immutable, which no one can be
        changing while the folder is read-only.
        """
        uri = self.path.resolve().as_uri()
        for mode in ("mode=ro", "immutable=1"):
            conn = sqlite3.connect(
                f"{uri}?{mode}", uri=True, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.DatabaseError as exc:
                conn.close()
                last = exc
        raise StoreError(f"cannot read {self.path}: {last}") from None

    @contextlib.contextmanager
    def transaction(self, expected: int | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction that bumps the generation; with `expected`, only at that one."""
        with self._lock:
            conn = self._connection()
            self._writes += 1  # generation() inside sees this transaction's own bump
            conn.execute("BEGIN IMMEDIATE")  # the write lock: other processes' writers wait
            try:
                found = _generation(conn)
                if expected is not None and found != expected:
                    raise ConcurrentChangeError(
                        f"{self.path.name} was changed by another process meanwhile "
                        f"(generation {found}, expected {expected}); nothing was written"
                    )
                put_meta(conn, {"generation": found + 1})
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                # Committed or rolled back: generation() reads again.
                self._writes += 1
            conn.execute("COMMIT")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def close(self) -> None:
        """Close the connection (SQLite then folds its write-ahead log into the file)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._known = None

    def generation(self) -> int:
        """The committed generation, read cheaply: every search asks for it.

        SQLite's `PRAGMA data_version` changes when another connection (another process)
        has committed, and `_writes` when this one may have: only then is the meta table read
        again. Both are exact, unlike a file's mtime, so no change can go unseen.
        """
        with self._lock:
            conn = self._connection()
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            known = self._known
            if known is not None and known[0] == version and known[1] == self._writes:
                return known[2]
            generation = _generation(conn)
            self._known = (version, self._writes, generation)
            return generation

    def meta(self) -> dict[str, Any]:
        with self._lock:
            return meta_of(self._connection())

    def set_meta(self, values: Mapping[str, Any]) -> None:
        """Change bookkeeping that does not change the collection (no new generation)."""
        with self.bookkeeping() as conn:
            put_meta(conn, values)

    @contextlib.contextmanager
    def bookkeeping(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that leaves the generation as it is: for what is no change of
        the collection (meta bookkeeping, derived data)."""
        with self._lock:
            conn = self._connection()
            self._writes += 1
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def rows(self, min_id: int = 0) -> list[tuple[int, str, str]]:
        """(vector id, path, category) of the images with ids above `min_id`, by id."""
        return self.query(
            "SELECT vector_id, path, category FROM images WHERE vector_id > ? ORDER BY vector_id",
            (min_id,),
        )

    def vectors_of(self, ids: Sequence[int], dim: int) -> np.ndarray:
        """The vectors (N×dim float32) of these ids, in their order."""
        out = np.empty((len(ids), dim), dtype=np.float32)
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            found = dict(
                self.query(
                    f"SELECT vector_id, vector FROM images WHERE vector_id IN ({marks})", chunk
                )
            )
            for j, vid in enumerate(chunk):
                out[start + j] = np.frombuffer(found[vid], dtype=np.float32)
        return out

    def removed_since(self, generation: int) -> list[int]:
        """Ids removed by changes after `generation`."""
        rows = self.query("SELECT vector_id FROM removed WHERE generation > ?", (generation,))
        return [r[0] for r in rows]


def put_meta(conn: sqlite3.Connection, values: Mapping[str, Any]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        ((k, json.dumps(v)) for k, v in values.items()),
    )


def insert_rows(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[str, str, FileFacts, str]],
    vectors: np.ndarray,
) -> None:
    """Insert (path, category, facts, model id) rows with their vectors; ids are allocated."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    conn.executemany(
        f"INSERT INTO images ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (p, c, f.size, f.mtime_ns, f.ctime_ns, f.inode, f.sha256, m, vectors[i].tobytes())
            for i, (p, c, f, m) in enumerate(rows)
        ),
    )


def delete_paths(conn: sqlite3.Connection, paths: Iterable[str], generation: int) -> list[str]:
    """Delete rows by path, logging their ids as removed by `generation`; returns those found."""
    found = []
    for path in paths:
        row = conn.execute("SELECT vector_id FROM images WHERE path = ?", (path,)).fetchone()
        if row is None:
            continue
        conn.execute("DELETE FROM images WHERE vector_id = ?", row)
        conn.execute("INSERT OR REPLACE INTO removed VALUES (?, ?)", (row[0], generation))
        found.append(path)
    return found


def put_derived_rows(conn: sqlite3.Connection, rows: Mapping[str, Derived]) -> None:
    """Write derived rows of images the table `images` holds (others are dropped)."""
    conn.executemany(
        "INSERT OR REPLACE INTO derived SELECT ?, ?, ?, ?, ?, ?, ?, ? "
        "WHERE EXISTS (SELECT 1 FROM images WHERE path = ?)",
        (
            (n, d.version, d.sha256, d.size, d.mtime_ns, d.summary, d.thumb, d.views, n)
            for n, d in rows.items()
        ),
    )


def delete_derived(conn: sqlite3.Connection, paths: Iterable[str]) -> None:
    conn.executemany("DELETE FROM derived WHERE path = ?", ((p,) for p in paths))


def read_derived(db: Database, names: Sequence[str] | None, thumbs: bool) -> dict[str, Derived]:
    """Derived rows by name (of `names`, else all); thumbnails only when asked."""
    large = "thumb, views" if thumbs else "x'', x''"
    sql = f"SELECT path, version, sha256, size, mtime_ns, summary, {large} FROM derived"
    if names is None:
        rows = db.query(sql)
    else:
        wanted, rows = list(dict.fromkeys(names)), []
        for start in range(0, len(wanted), 500):  # SQLite's bound on parameters
            chunk = wanted[start : start + 500]
            rows += db.query(f"{sql} WHERE path IN ({','.join('?' * len(chunk))})", chunk)
    return {r[0]: Derived(*r[1:5], bytes(r[5]), bytes(r[6]), bytes(r[7])) for r in rows}


def meta_of(conn: sqlite3.Connection) -> dict[str, Any]:
    """The meta table as read on this connection (inside its transaction, if any)."""
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def generation_of(conn: sqlite3.Connection) -> int:
    """The generation as read on this connection (0 before the first change)."""
    return _generation(conn)


def _generation(conn: sqlite3.Connection) -> int:
    row = (
        conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if _has_table(conn, "meta")
        else None
    )
    return int(json.loads(row[0])) if row else 0


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(q, (name,)).fetchone() is not None


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a version-1 manifest (vector ids by position) to this schema, in one transaction."""
    if not _has_table(conn, "images"):
        return
    columns = {r[1] for r in conn.execute("PRAGMA table_info(images)")}
    if "ctime_ns" in columns:
        return
    conn.execute("BEGIN IMMEDIATE")
    if "ctime_ns" in {r[1] for r in conn.execute("PRAGMA table_info(images)")}:
        conn.execute("ROLLBACK")  # another process migrated it while this one waited
        return
    try:
        conn.execute("ALTER TABLE images RENAME TO images_v1")
        conn.execute("DROP INDEX IF EXISTS images_vector_id")
        conn.execute("DROP INDEX IF EXISTS images_sha256")
        # executescript would commit first: the statements run one by one inside the transaction.
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO images ({_COLUMNS}) SELECT path, category, size, mtime_ns, NULL, NULL, "
            "sha256, model_id, vector FROM images_v1 ORDER BY vector_id"
        )
        conn.execute("DROP TABLE images_v1")
        conn.execute("DELETE FROM meta WHERE key IN ('checkpoints', 'next_vector_id')")
        put_meta(conn, {"schema": SCHEMA_VERSION})
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def snapshot(db: Database) -> Iterator[Database]:
    """Hold one read transaction: every query inside sees the same committed state."""
    with db._lock:
        conn = db._connection()
        conn.execute("BEGIN DEFERRED")
        try:
            yield db
        finally:
            conn.execute("COMMIT")
