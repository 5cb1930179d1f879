"""Crash-safe file writing: every output is written to a temporary file, fsynced, then renamed."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# atomic_path's temporary names: "." + target name + "." + mkstemp's 8 random characters +
# ".tmp" (mkstemp draws them from a-z, 0-9 and "_"). Nothing else imgsim writes looks like it.
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")
STALE_TEMP_SECONDS = 10 * 60  # older than any write imgsim makes: its writer is gone


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it; /proc avoids even that brief change, which
    # another thread creating a file at the same moment would see.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a plain open() would give a new file: 0o666 less the process umask."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` atomically.

    A crash or exception before the end leaves the previous `target` untouched and removes the
    temporary file, so a reader never sees a half-written model, index or array. The file gets
    the user's umask (mkstemp alone would make it 0600).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, default_file_mode())
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make renames and new entries in `directory` durable (best effort where unsupported)."""
    _fsync_dir(Path(directory))


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry itself reaches the disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def copy_durably(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy a file to a new name (never over an existing one), fsynced, with its times and mode.

    For moves across file systems, where the caller removes the source only after this.
    """
    with open(source, "rb") as src, open(target, "xb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())
    shutil.copystat(source, target)


def is_temp_name(name: str) -> bool:
    """Whether `name` is one of atomic_path's temporary files."""
    return _TEMP_NAME.fullmatch(name) is not None


def clean_stale_temps(
    directory: str | os.PathLike[str], older_than_s: float = STALE_TEMP_SECONDS
) -> list[str]:
    """Remove atomic_path's leftover temporary files in `directory` (not below it).

    Only files older than `older_than_s` go: a younger one may belong to a write still in
    progress in another process. Returns the names removed; a missing folder is no error.
    """
    removed: list[str] = []
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue  # gone meanwhile, or not ours to remove: leave it
    return sorted(removed)


def replace_unsynced(target: str | os.PathLike[str], data: bytes) -> None:
    """Write a cache entry: a temporary file renamed over `target`, without fsync.

    Only for entries a reader checks and can make again (the thumbnail cache checks the
    length): a reader never sees a half-written file, and skipping fsync keeps thousands of
    small writes cheap; after a power cut an entry may be lost, never wrong in length.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
