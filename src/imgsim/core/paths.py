"""Image names and their paths: the escaped form of any file name, and paths that stay inside."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from .errors import UnsafePathError

# An image's name is text everywhere (database, JSON, page, logs). A file name that is not
# UTF-8 has bytes Python holds as lone surrogates (surrogateescape, U+DC80-U+DCFF), which
# SQLite, JSON and browsers cannot carry; its name writes each such byte as \xHH, and a
# backslash as \\, so every file name has exactly one name and back (escape_name and
# unescape_name). Names without a backslash or a non-UTF-8 byte are their own escaped form.
_ESCAPES = re.compile(r"\\(\\|x[89a-f][0-9a-f])")
_TO_ESCAPE = re.compile("[\\\\\udc80-\udcff]")


def escape_name(raw: str) -> str:
    """The name of a file name as os.scandir gives it (surrogateescape): valid Unicode text."""
    if not _TO_ESCAPE.search(raw):
        return raw  # the usual case: no copy
    return _TO_ESCAPE.sub(lambda m: _escape_char(m.group()), raw)


def _escape_char(char: str) -> str:
    return "\\\\" if char == "\\" else f"\\x{ord(char) - 0xDC00:02x}"


def unescape_name(name: str) -> str:
    """The file name (surrogateescape) of an escaped name; UnsafePathError if it is not one."""
    if "\\" not in name:
        return name
    if _ESCAPES.sub("", name).count("\\"):
        raise UnsafePathError(f"not a usable name: {name[:200]!r}")
    return _ESCAPES.sub(_unescape_match, name)


def _unescape_match(match: re.Match[str]) -> str:
    code = match.group(1)
    return "\\" if code == "\\" else chr(0xDC00 + int(code[1:], 16))


def name_path(root: str | os.PathLike[str], name: str) -> Path:
    """The path of the escaped `name` under `root` (no safety checks: see safe_path)."""
    # Path(root) of a Path parses it again: half the cost of a folder scan's thousands of calls.
    return (root if isinstance(root, Path) else Path(root)) / unescape_name(name)


def safe_path(data_dir: str | os.PathLike[str], name: str) -> Path:
    """The path of `name` inside `data_dir`, after following every symlink on the way.

    Raises UnsafePathError when `name` is absolute, climbs with '..', or passes through a
    folder symlink (or ends in a file symlink) whose target lies outside the data folder.
    The returned path is the entry itself (its folders resolved, its last part not), so
    moving or removing it moves the entry, never a file it points to.
    """
    if not name or "\x00" in name:
        raise UnsafePathError(f"not a usable name: {name[:200]!r}")
    # A backslash only as an escape: "..\\x" and other Windows-style paths are refused here.
    rel = PurePosixPath(unescape_name(name))
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
