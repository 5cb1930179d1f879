"""Changing an indexed collection and its files: uploads in, images out to the trash, and the
uploads a crash left half-way; every change under the work folder's change lock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..core.errors import ImgsimError, NotReadyError, storage_errors
from ..core.names import is_image_file
from ..core.paths import name_path, safe_path
from ..embed.uploads import recover_uploads
from ..explore.duplicates.derived import ImageFacts, derive_or_none, encode
from ..files.changes import changing
from ..files.staging import Staged, Staging
from ..files.trash import finish, move_to_trash, reserve
from ..store import Item
from ..store.base import EMBEDDINGS_MISSING
from .searcher import Searcher

FileSource = str | Path | bytes | BinaryIO


class ImageNameError(ImgsimError, ValueError):
    """A name that cannot be an image of the dataset (absolute, '..', hidden, not an image)."""


def dataset_name(name: str) -> str:
    """`name` if it is a safe dataset-relative image name (`shirt_001.jpg`, `shirt/a.jpg`).

    Raises ImageNameError otherwise, so a name from a request can never reach outside the
    data folder or hide from the folder scan.
    """
    parts = name.split("/")
    bad_part = any(not p or p.startswith(".") or p.strip() != p for p in parts)
    if bad_part or "\\" in name or not name.isprintable() or not is_image_file(Path(name)):
        raise ImageNameError(
            f"not a usable image name: {name[:200]!r} (a relative path such as shirt_001.jpg "
            "or shirt/a.jpg, no '..' or hidden parts, with an image extension)"
        )
    return name


class CollectionEditor:
    """Adds and removes the images of one Searcher's collection, files and index together.

    The searcher embeds what comes in (and says whether the collection is ready); the editor
    stages, commits and moves. Writers of every process take turns (imgsim.files.changes).
    """

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self.workdir = searcher.workdir

    @property
    def data_dir(self) -> Path | None:
        """The data folder of the collection, or None without one."""
        info = self.searcher.store.info() if self.searcher.store is not None else None
        return Path(info.data_dir) if info is not None else None

    def staging(self) -> Staging:
        """Where uploads wait until they are indexed (in the workdir, outside the data folder)."""
        data_dir = self.data_dir
        if data_dir is None:
            raise NotReadyError(EMBEDDINGS_MISSING)
        return Staging(self.workdir, data_dir)

    def recover_uploads(self) -> None:
        """Finish or drop the uploads a crash interrupted (called when a server starts)."""
        if self.searcher.store is not None:
            recover_uploads(self.workdir, self.searcher.store)

    def add_images(self, images: Mapping[str, FileSource]) -> list[str]:
        """Add images, or replace them, under dataset-relative names; returns the names.

        Every image is decoded and embedded first (ImageNameError or UnreadableImageError and
        nothing changes), staged outside the data folder, indexed in one atomic change, then
        moved to its name. A crash at any point leaves file and entry together or neither
        (`Staging.recover`). Writers of every process take turns in the store.
        """
        self.searcher.ready(vectors=False)  # NotReadyError before anything is read or embedded
        names = [dataset_name(n) for n in images]
        staging = self.staging()
        for name in names:
            safe_path(staging.data_dir, name)  # no write through a symlink out of the folder
        data = [_read_bytes(source) for source in images.values()]
        vectors = self.searcher.embed(list(data))  # the slow part, before the lock
        # Kept beside the vectors, so `imgsim duplicates` never decodes these files again.
        derived = [derive_or_none(n, blob) for n, blob in zip(names, data, strict=True)]
        # A full disk or a read-only folder: _add_staged takes back what it began.
        with storage_errors("nothing was added"), changing(self.workdir):
            self._add_staged(staging, names, data, vectors, derived)
        return names

    def _add_staged(
        self,
        staging: Staging,
        names: list[str],
        data: list[bytes],
        vectors: np.ndarray,
        derived: list[ImageFacts | None],
    ) -> None:
        """Stage, commit, then move each file to its name; whatever raises, no intent stays."""
        store = self.searcher.ready(vectors=False)
        staged: list[Staged] = []
        committed = False
        try:
            for name, blob in zip(names, data, strict=True):
                staged.append(staging.stage(name, blob))
            # A replaced image goes to the trash, never overwritten; its record is written
            # before the commit, so a full disk stops the add while nothing has changed.
            replaced = {
                s.name: reserve(self.workdir, staging.data_dir, s.name)
                for s in staged
                if s.target.is_file()
            }
            items = [
                Item(s.name, v, s.facts, encode(d, s.facts) if d is not None else None)
                for s, v, d in zip(staged, vectors, derived, strict=True)
            ]
            store.add(items, self.searcher.model_info.get("model_id", ""))
            committed = True
            while staged:
                item = replaced.get(staged[0].name)
                trash = (
                    partial(finish, self.workdir, staging.data_dir, item)
                    if item is not None
                    else partial(move_to_trash, self.workdir, staging.data_dir, staged[0].name)
                )
                staging.publish(staged[0], lambda _old, trash=trash: trash())
                staged.pop(0)
        except Exception:
            if committed and staged:  # indexed but not moved in: take the entries back out
                store.remove([s.name for s in staged])
            for s in staged:
                staging.discard(s)
            raise
        except BaseException:
            # The process is going (KeyboardInterrupt, SystemExit): what was committed is
            # left to Staging.recover at the next start, as after a kill.
            for s in staged if not committed else []:
                staging.discard(s)
            raise

    def remove_images(self, names: Iterable[str], trash_files: bool = True) -> list[str]:
        """Remove images from the index and move their files to the trash (never unlinked).

        Returns the names that were indexed. The index change is committed before any file
        moves: a crash in between leaves a file that `imgsim index --update` indexes again,
        never a result without a file. `imgsim trash restore NAME` brings a file back.
        """
        store = self.searcher.ready(vectors=False)
        data_dir = self.data_dir
        # Unknown names (a typo, a probe from a request) change nothing, not even the
        # generation: other workers keep their state.
        known = [n for n in dict.fromkeys(names) if store.contains(n)]
        if not known:
            return []  # nothing written, not even the lock file
        if data_dir is not None:
            for name in known:
                safe_path(data_dir, name)  # UnsafePathError before anything changes
        # Under the change lock: no upload of the same name, and no index update, comes
        # between the commit and the file's move to the trash. The trash's records are
        # written first: a full disk stops the removal before the commit, never after it.
        with storage_errors("nothing was removed"), changing(self.workdir):
            known = [n for n in known if store.contains(n)]  # another request may have won
            moving = known if trash_files and data_dir is not None else []
            files = [n for n in moving if name_path(data_dir, n).is_file()]  # type: ignore[arg-type]
            reserved = {n: reserve(self.workdir, data_dir, n) for n in files}  # type: ignore[arg-type]
            removed = store.remove(known) if known else []  # a 404 if another request won
            for name in removed:
                if name in reserved:
                    finish(self.workdir, data_dir, reserved[name])  # type: ignore[arg-type]
        return removed

    def image_path(self, name: str) -> Path | None:
        """The file of an indexed image, or None: names not in the index are never opened."""
        if self.searcher.store is None or not self.searcher.store.contains(name):
            return None
        data_dir = self.data_dir
        path = name_path(data_dir, name) if data_dir is not None else None
        return path if path is not None and path.is_file() else None


def _read_bytes(source: FileSource) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str | Path):
        return Path(source).read_bytes()
    return source.read()
