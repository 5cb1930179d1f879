"""Trashed images put back into the indexed collection: the undo of a removal from the index."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import TrashError
from ..core.paths import name_path, unescape_name
from ..files import trash
from .editor import CollectionEditor


def trashed_items(workdir: str | os.PathLike[str], ids: Sequence[str]) -> list[trash.TrashItem]:
    """The trash items with these ids; TrashError naming the first that is not in the trash."""
    by_id = {item.id: item for item in trash.list_trash(workdir)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise TrashError(f"nothing in the trash has the id {missing[0][:200]!r} (restored?)")
    return [by_id[i] for i in dict.fromkeys(ids)]


def restore_to_index(editor: CollectionEditor, ids: Sequence[str]) -> list[str]:
    """Put trashed images back in their place and in the index; returns their names.

    Everything is checked before anything changes (TrashError): each item came from the
    collection's data folder, and no file has taken its name since. The images are added as
    an upload is (embedded, indexed in one change, then moved into place), from a copy of the
    trashed file; only once the bytes are back is the trashed copy dropped, so a crash in
    between leaves the picture twice, never nowhere. The file keeps its modification time.
    """
    data_dir = editor.data_dir
    items = trashed_items(editor.workdir, ids)
    for item in items:
        if data_dir is None or Path(unescape_name(item.data_dir)) != data_dir.resolve():
            raise TrashError(f"{item.name!r} was trashed from another folder than the index's")
        if os.path.lexists(name_path(data_dir, item.name)):
            raise TrashError(
                f"cannot restore {item.name!r}: a file has that name now; move it away first"
            )
    times = {item.name: os.stat(item.stored).st_mtime for item in items}
    names = editor.add_images({item.name: Path(item.stored) for item in items})
    for item in items:
        assert data_dir is not None
        mtime = times[item.name]
        os.utime(name_path(data_dir, item.name), (mtime, mtime))
        trash.drop_restored(editor.workdir, item.id)
    return names
