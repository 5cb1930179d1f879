"""What a file was when it was embedded: size, times, inode and content hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileFacts:
    """A file's stat and hash; another stat means: hash it again before trusting the vector."""

    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    # A file replaced by another of the same size and modification time (cp -p, rsync -t, a
    # restore from backup) still gets a new inode or change time: both are compared too.
    ctime_ns: int | None = None
    inode: int | None = None

    def same_stat(self, other: FileFacts) -> bool:
        """Same size, modification time, change time and inode (unknown facts never match)."""
        if self.size is None or (self.size, self.mtime_ns) != (other.size, other.mtime_ns):
            return False
        # Rows written before ctime and inode were recorded compare on size and time only.
        return all(
            mine is None or mine == theirs
            for mine, theirs in ((self.ctime_ns, other.ctime_ns), (self.inode, other.inode))
        )


def stat_facts(path: str | os.PathLike[str]) -> FileFacts:
    """Size, times and inode only: cheap enough to check every file on each update."""
    st = os.stat(path)
    return FileFacts(st.st_size, st.st_mtime_ns, None, st.st_ctime_ns, st.st_ino)


def file_facts(path: Path) -> FileFacts | None:
    """Stat and SHA-256 of a file, or None if it cannot be read.

    The stat is taken before the bytes are read: a file that changes meanwhile shows a new stat
    on the next update and is hashed (and embedded) again, never remembered with a stale hash.
    """
    try:
        st = path.stat()
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None
    return FileFacts(st.st_size, st.st_mtime_ns, digest, st.st_ctime_ns, st.st_ino)


def collect_facts(paths: Sequence[Path], workers: int = 2) -> list[FileFacts | None]:
    """`file_facts` of many files, in threads (hashlib releases the GIL while it hashes)."""
    if len(paths) < 2:
        return [file_facts(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(file_facts, paths))
