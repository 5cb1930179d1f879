"""The one walk over image folders: unreadable folders and symlink loops skipped with a warning."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..core.paths import escape_name

log = logging.getLogger("imgsim")

_warned: set[str] = set()  # paths already warned about: one warning each per process
_warned_lock = threading.Lock()


def list_folder(folder: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    """The entries of `folder`; none, with one warning, when it cannot be read.

    A folder the user cannot read (mode 000, another owner) or a symlink loop is not the
    collection's concern: every command goes on with the rest rather than ending in a traceback.
    """
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []  # removed meanwhile: nothing to warn about
    except OSError as exc:
        skipped(folder, exc)
        return []


def subfolders(folder: str | os.PathLike[str]) -> list[Path]:
    """The real folders directly in `folder` (not symlinks to folders), readable or not."""
    return [Path(e.path) for e in list_folder(folder) if _is_dir(e)]


def walk_names(root: str | os.PathLike[str], keep: Callable[[str], bool]) -> list[str]:
    """Escaped names ('/'-separated, relative to `root`) of the files below it that `keep`
    accepts (it sees the last part), sorted as paths; hidden entries and symlinked folders
    are left out, as Path.rglob does."""
    names: list[str] = []
    todo = [(os.fspath(root), "")]
    while todo:
        folder, prefix = todo.pop()
        for entry in list_folder(folder):
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                todo.append((entry.path, prefix + escape_name(entry.name) + "/"))
            elif keep(entry.name):
                if _is_file(entry):  # follows a link: a file link counts
                    names.append(prefix + escape_name(entry.name))
            elif entry.is_symlink():
                _is_file(entry)  # a symlink loop among the other files is named all the same
    if any("/" in n for n in names):
        names.sort(key=lambda n: n.split("/"))  # the order sorting Paths gives
    else:
        names.sort()  # the same order, without a key list per file
    return names


def skipped(path: str | os.PathLike[str], exc: OSError) -> None:
    """Warn once per process that `path` is left out, and why."""
    why = "a symlink loop" if exc.errno == errno.ELOOP else exc.strerror or type(exc).__name__
    key = os.fsdecode(path)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning("skipped %s: %s", escape_name(key), why)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError as exc:
        skipped(entry.path, exc)
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    # Follows a file symlink, so a link that points at itself fails here (ELOOP): skip it.
    try:
        return entry.is_file()
    except OSError as exc:
        skipped(entry.path, exc)
        return False
