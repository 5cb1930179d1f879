"""Uploads on their way in: staged in the workdir, indexed, then moved into the data folder.

An upload is written (fsynced) into the staging folder with an intent file that names its
target, and the intent is locked (flock) while its request runs. The index entry is
committed next, then the file moved to its name. After a crash at any point, `recover`
(called when a server or an `imgsim index` starts) finishes an intent whose entry was
committed and drops one whose entry was not, so the file and its entry exist together or
not at all. Locked intents belong to a live request and are left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.config import STAGING_DIR
from .filefacts import FileFacts

log = logging.getLogger("imgsim")


@dataclass
class Staged:
    """One staged upload: its bytes on disk, where they go, and the held intent."""

    name: str
    path: Path
    target: Path
    facts: FileFacts
    intent: Path
    lock_fd: int


class Staging:
    """The staging folder of a workdir, for images that go into `data_dir`."""

    def __init__(self, workdir: str | Path, data_dir: str | Path) -> None:
        self.dir = Path(workdir) / STAGING_DIR
        self.data_dir = Path(data_dir)

    def stage(self, name: str, data: bytes) -> Staged:
        """Write `data` (fsynced) and its intent; the intent stays locked until publish/discard."""
        self.dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        path = self.dir / f"{token}{Path(name).suffix}"
        intent = self.dir / f"{token}.json"
        fd = os.open(intent, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            _write_synced(path, data)
            record = {"name": name, "file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
            os.write(fd, json.dumps(record).encode())
            os.fsync(fd)
        except BaseException:
            path.unlink(missing_ok=True)
            _release(intent, fd)
            raise
        st = path.stat()
        # No ctime: the move into the data folder changes it, which is not a new file.
        facts = FileFacts(len(data), st.st_mtime_ns, record["sha256"], None, st.st_ino)
        return Staged(name, path, self.data_dir / name, facts, intent, fd)

    def publish(self, staged: Staged, before_replace: Callable[[Path], None] | None = None) -> None:
        """Move a staged file (whose entry is committed) to its name, then forget the intent."""
        staged.target.parent.mkdir(parents=True, exist_ok=True)
        if before_replace is not None and staged.target.exists():
            before_replace(staged.target)
        _move(staged.path, staged.target)
        _release_staged(staged)

    def discard(self, staged: Staged) -> None:
        """Drop a staged file whose entry is not (or no longer) committed; safe to repeat."""
        staged.path.unlink(missing_ok=True)
        _release_staged(staged)

    def recover(self, committed: Callable[[str, str], bool]) -> tuple[int, int]:
        """Finish or drop what a crash left; returns (finished, dropped).

        `committed(name, sha256)` says whether the index holds that name with that content.
        """
        finished = dropped = 0
        if not self.dir.is_dir():
            return 0, 0
        for intent in sorted(self.dir.glob("*.json")):
            outcome = self._recover_one(intent, committed)
            finished += outcome == "finished"
            dropped += outcome == "dropped"
        named = {p.stem for p in self.dir.glob("*.json")}
        for leftover in self.dir.iterdir():
            if leftover.suffix != ".json" and leftover.stem not in named:
                leftover.unlink(missing_ok=True)  # staged without an intent: never indexed
                dropped += 1
        if finished or dropped:
            log.info("Recovered interrupted uploads: %d finished, %d dropped", finished, dropped)
        return finished, dropped

    def _recover_one(self, intent: Path, committed: Callable[[str, str], bool]) -> str:
        try:
            fd = os.open(intent, os.O_RDWR)
        except FileNotFoundError:
            return ""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return ""  # a live request holds it
        try:
            record = json.loads(intent.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            record = {}
        if not record and time.time() - intent.stat().st_mtime < 60:
            os.close(fd)  # just created: its request has not written it yet
            return ""
        staged = self.dir / str(record.get("file", ""))
        if record and staged.is_file() and committed(record["name"], record["sha256"]):
            target = self.data_dir / record["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # the image it replaces goes to the trash, as in `publish`
                from .trash import move_to_trash

                move_to_trash(self.dir.parent, self.data_dir, record["name"])
            _move(staged, target)
            outcome = "finished"
        else:
            if record.get("file"):
                staged.unlink(missing_ok=True)
            outcome = "dropped" if record else ""
        _release(intent, fd)
        return outcome


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _move(source: Path, target: Path) -> None:
    """Rename, or copy (fsynced) then remove where the two folders are on different disks."""
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV
            raise
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            shutil.copy2(source, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        source.unlink()
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _release_staged(staged: Staged) -> None:
    # At most once: the descriptor number may belong to another file once closed.
    if staged.lock_fd >= 0:
        fd, staged.lock_fd = staged.lock_fd, -1
        _release(staged.intent, fd)


def _release(intent: Path, fd: int) -> None:
    intent.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def wait_for_uploads(workdir: str | Path, timeout: float = 30.0) -> None:
    """Wait until the uploads in flight now have reached their names (or `timeout` passes).

    An upload's entry is committed a moment before its file is moved in: a scan of the data
    folder that follows a commit must not miss the file.
    """
    folder = Path(workdir) / STAGING_DIR
    pending = set(folder.glob("*.json")) if folder.is_dir() else set()
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {p for p in pending if p.exists()}
        if pending:
            time.sleep(0.01)
