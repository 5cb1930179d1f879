"""The indexed collection's duplicate data: read from the store, derived again where a file
changed (or none is kept), and written back, so an unchanged collection reads no image."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.errors import ImgsimError
from ...files.filefacts import FileFacts
from ...images.data import ImageRecord, category_of, default_workers
from ...store.base import Derived, Store
from .derived import ImageFacts, current, decode, encode, iter_derived

log = logging.getLogger("imgsim")

WRITE_BATCH = 2000  # derived rows per write-back: one transaction (fsync) each


@dataclass
class StoredImages:
    """What is known of each image: its facts, its file's mtime, and the names skipped."""

    facts: dict[str, ImageFacts] = field(default_factory=dict)
    modified: dict[str, float | None] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)  # names whose stored row is current


def load_stored(
    store: Store,
    names: Sequence[str],
    paths: Sequence[Path],
    indexed: dict[str, FileFacts],
    workers: int = 0,
) -> StoredImages:
    """Facts of every image: stored rows still current are used, the rest derived from the
    files (in worker processes when many) and written back."""
    rows = store.derived()
    out = StoredImages()
    todo: list[ImageRecord] = []
    for name, path in zip(names, paths, strict=True):
        stat, out.modified[name] = _stat(path)
        row = rows.get(name)
        if row is not None and current(row, stat, indexed.get(name)):
            out.facts[name] = decode(name, row)
            out.kept.add(name)
        else:
            todo.append(ImageRecord(name, category_of(name), path))
    _derive(store, todo, workers or default_workers(), out)
    return out


def derive_into(store: Store, records: Sequence[ImageRecord], workers: int = 0) -> None:
    """Derive the duplicate data of these indexed images from their files and keep it in the
    store (imgsim index: the images it added); unreadable ones are left to the finder."""
    if records:
        _derive(store, list(records), workers or default_workers(), StoredImages(), quiet=True)


def _stat(path: Path) -> tuple[FileFacts | None, float | None]:
    # st_mtime as well: the members' dates are the float os.stat gives, as for a folder.
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return FileFacts(st.st_size, st.st_mtime_ns), st.st_mtime


def _derive(
    store: Store, todo: list[ImageRecord], workers: int, out: StoredImages, quiet: bool = False
) -> None:
    """Derive the facts of `todo` from their files into `out`, writing them back in batches."""
    pending: dict[str, Derived] = {}
    for done, failed in iter_derived(todo, workers):
        for found, stat in done:
            name = found.fingerprint.name
            pending[name] = encode(found, stat)
            out.facts[name] = ImageFacts(found.fingerprint, found.taken)  # thumbs: in the store
        for name, why in failed if not quiet else ():
            log.warning("Skipping unreadable image %s: %s", name, why)
        out.skipped.extend(failed)
        if len(pending) >= WRITE_BATCH:
            _write_back(store, pending, out)
    _write_back(store, pending, out)


def _write_back(store: Store, rows: dict[str, Derived], out: StoredImages) -> None:
    # A read-only work folder or a busy server only costs the next run the same work.
    with contextlib.suppress(ImgsimError, OSError):
        store.put_derived(rows)
        out.kept.update(rows)
    rows.clear()


def stored_thumbnails(store: Store, names: Sequence[str], kept: set[str]) -> dict[str, np.ndarray]:
    """The thumbnails the store holds for these images, by name, where their row is current;
    the caller decodes the others (Collection.fill_thumbnails)."""
    rows = store.derived([n for n in names if n in kept], thumbs=True)
    found = {name: decode(name, row).thumb for name, row in rows.items()}
    return {name: thumb for name, thumb in found.items() if thumb is not None}
