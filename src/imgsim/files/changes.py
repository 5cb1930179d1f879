"""The workdir's change lock: adds, removals and index updates of a collection take turns."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

CHANGES_LOCK = ".imgsim-changes.lock"  # in the workdir, beside the index


@contextlib.contextmanager
def changing(workdir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the workdir's change lock (every process and thread takes turns) while inside.

    An upload holds it from staging to the file's move, a removal from its commit to the
    file's move to the trash, an index update while it reads the folder and commits: so no
    change ever sees another half done (a file trashed but still indexed, or indexed back).
    The lock is an flock on its own open file: released by the kernel if the process dies.
    """
    path = Path(workdir) / CHANGES_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock
