"""Names from users and requests turned into paths that provably stay inside the data folder."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .errors import UnsafePathError


def safe_path(data_dir: str | os.PathLike[str], name: str) -> Path:
    """The path of `name` inside `data_dir`, after following every symlink on the way.

    Raises UnsafePathError when `name` is absolute, climbs with '..', or passes through a
    folder symlink (or ends in a file symlink) whose target lies outside the data folder.
    The returned path is the entry itself (its folders resolved, its last part not), so
    moving or removing it moves the entry, never a file it points to.
    """
    if not name or "\x00" in name or "\\" in name:
        raise UnsafePathError(f"not a usable name: {name[:200]!r}")
    rel = PurePosixPath(name)
    if rel.is_absolute() or any(part in ("..", ".") for part in rel.parts) or not rel.parts:
        raise UnsafePathError(f"{name[:200]!r} leads outside the data folder")
    root = Path(data_dir).resolve()
    parent = (root / rel.parent).resolve()
    _require_inside(root, parent, name)
    path = parent / rel.name
    if path.is_symlink():
        _require_inside(root, path.resolve(), name)
    return path


def is_inside(data_dir: str | os.PathLike[str], name: str) -> bool:
    """Whether `name` is a path that stays inside `data_dir` (see safe_path)."""
    try:
        safe_path(data_dir, name)
    except UnsafePathError:
        return False
    return True


def _require_inside(root: Path, resolved: Path, name: str) -> None:
    if resolved != root and not resolved.is_relative_to(root):
        raise UnsafePathError(
            f"{name[:200]!r} leads outside the data folder (through a symbolic link)"
        )
