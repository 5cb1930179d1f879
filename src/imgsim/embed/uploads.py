"""Uploads a crash left half-way: each finished or dropped by what the store has committed."""

from __future__ import annotations

from pathlib import Path

from ..files.filefacts import FileFacts
from ..files.staging import Staging
from ..store.base import Store


def recover_uploads(workdir: str | Path, store: Store) -> tuple[int, int]:
    """Finish or drop the uploads a crash left in `workdir` for the collection in `store`.

    The store's facts are read only if an upload is waiting: a start-up with none costs nothing.
    """
    collection = store.info()
    if collection is None:
        return 0, 0
    facts: dict[str, FileFacts] | None = None

    def committed(name: str, sha256: str) -> bool:
        nonlocal facts
        facts = facts if facts is not None else store.facts()
        return name in facts and facts[name].sha256 == sha256

    return Staging(workdir, collection.data_dir).recover(committed)
