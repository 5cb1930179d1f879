"""A JSON document computed from the collection in the background, kept in the work folder.

Some answers (the map, the duplicate groups) take minutes on a large collection, so no request
computes one: the first request after a change starts a background thread (one process at a
time, through a lock file) and gets the previous document, marked stale, or none yet; the next
requests get the new one. Every process of the server reads the same file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..core.errors import ReadOnlyError, storage_error
from ..core.fileio import atomic_path
from ..store import Store

log = logging.getLogger("imgsim")
S = TypeVar("S")  # the settings a document is computed with


@dataclass(frozen=True)
class DocumentState:
    """What a caller gets now: the document (None before the first), whether it is current,
    whether a newer one is being computed, and why the last try failed ('' if it did not)."""

    document: dict[str, Any] | None
    current: bool
    computing: bool
    error: str = ""

    @property
    def status(self) -> str:
        """ready: of the collection as it is; updating: of an earlier state, a new one is on
        its way; stale: of an earlier state, the new one failed (see `error`)."""
        return "ready" if self.current else "updating" if self.computing else "stale"


def write_document(document: dict[str, Any], path: str | Path) -> None:
    """Write a document atomically: a reader sees the old one or the new, never half."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def read_document(path: str | Path, required: str) -> dict[str, Any] | None:
    """A stored document that has the key `required`, or None (none, or unreadable)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and required in document else None


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`: server processes share the work folder."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Closed by the with below. Locked in place, so never replaced: a file renamed over it
        # would be a new inode, and two processes would each hold a lock on a different one.
        fh = open(path, "a+b")  # noqa: SIM115  # not an output: an empty lock file
    except OSError as exc:
        if not isinstance(storage_error(exc, ""), ReadOnlyError):
            raise
        yield  # a read-only work folder: no one writes there, so no one to take turns with
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def matches(document: dict[str, Any], key: dict[str, Any]) -> bool:
    """Whether a document carries every item of `key` (generation, store, settings)."""
    return all(document.get(k) == v for k, v in key.items())


class KeptDocument(Generic[S]):
    """One kind of document of one work folder, for one process; safe to share across threads.

    A subclass says what the document is: `compute` (the whole document, carrying `key`'s
    items), `key` (what a stored document must match to be current) and `shows_stale` (whether
    an older document may be shown while the new one is computed).
    """

    what = "document"  # for messages and the thread's name
    required = "generation"  # a key every stored document has

    def __init__(self, path: Path, lock_path: Path) -> None:
        self.path, self.lock_path = path, lock_path
        self._lock = threading.Lock()
        self._document: dict[str, Any] | None = None  # the newest this process has seen
        self._file_stamp: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._failed: tuple[dict[str, Any], str] | None = None  # (key, message)

    def compute(self, store: Store, settings: S) -> dict[str, Any]:
        raise NotImplementedError

    def key(self, store: Store, settings: S, generation: int) -> dict[str, Any]:
        raise NotImplementedError

    def shows_stale(self, document: dict[str, Any], key: dict[str, Any]) -> bool:
        return True

    def current(self, store: Store, settings: S) -> DocumentState:
        """The document now; starts computing a new one in the background when not current."""
        key = self.key(store, settings, store.generation())
        with self._lock:
            self._reread()
            old = self._document
            if old is not None and matches(old, key):
                return DocumentState(old, current=True, computing=False)
            shown = old if old is not None and self.shows_stale(old, key) else None
            if self._failed is not None and self._failed[0] == key:
                return DocumentState(shown, False, False, self._failed[1])
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(store, settings, key),
                    name=f"imgsim-{self.what}", daemon=True,
                )  # fmt: skip
                self._thread.start()
            return DocumentState(shown, current=False, computing=True)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a computation in progress to end (for tests and scripts)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _reread(self) -> None:
        # Another process may have written a newer one; parse the file only when it changed.
        try:
            stat = self.path.stat()
        except OSError:
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._file_stamp:
            document = read_document(self.path, self.required)
            if document is not None:
                self._document, self._file_stamp = document, stamp

    def _write(self, document: dict[str, Any]) -> None:
        try:
            write_document(document, self.path)
        except OSError as exc:
            if storage_error(exc, "") is None:
                raise
            # A read-only work folder or a full disk: served from memory, computed again
            # by the next process.
            log.warning("The %s is kept in memory only: %s", self.what, exc)

    def _run(self, store: Store, settings: S, key: dict[str, Any]) -> None:
        try:
            with exclusive(self.lock_path):
                document = read_document(self.path, self.required)  # another process's?
                if document is None or not matches(document, key):
                    document = self.compute(store, settings)
                    self._write(document)
                    log.info("Computed the %s of the collection", self.what)
            with self._lock:
                self._document, self._failed = document, None
        except Exception as exc:  # reported by the next request; retried after a change
            log.exception("Cannot compute the %s", self.what)
            with self._lock:
                self._failed = (key, f"cannot compute the {self.what}: {exc}")
        finally:
            with self._lock:
                self._thread = None
