"""The trash: removed images wait in the work folder, with where they came from, until emptied."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..core.config import TRASH_DIR, TRASH_JOURNAL
from ..core.errors import TrashError
from ..core.fileio import copy_durably, default_file_mode, fsync_dir, write_text_atomic
from ..core.paths import escape_name, name_path, safe_path, unescape_name

_LOCK = ".lock"
_PARTIAL = ".partial"  # a copy across file systems that is not complete yet
_SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class TrashItem:
    """One file in the trash: its id, where it came from, and where it waits."""

    id: str
    name: str  # relative to data_dir, as imgsim names images ("hats/a.jpg")
    data_dir: str  # the data folder it came from (absolute, escaped as names are)
    trashed_at: float  # seconds since the epoch
    size: int
    sha256: str
    stored: str  # the file in the trash (absolute)

    @property
    def original(self) -> Path:
        """Where the file was, and where restore puts it back."""
        return name_path(unescape_name(self.data_dir), self.name)

    def to_dict(self) -> dict:
        """JSON-ready, with the time also as ISO 8601 for people."""
        time_text = datetime.fromtimestamp(self.trashed_at, UTC).isoformat(timespec="seconds")
        return {**asdict(self), "trashed": time_text}


def trash_dir(workdir: str | os.PathLike[str]) -> Path:
    """The trash folder of a work folder."""
    return Path(workdir) / TRASH_DIR


def move_to_trash(
    workdir: str | os.PathLike[str], data_dir: str | os.PathLike[str], name: str
) -> TrashItem:
    """Move data_dir/name into the trash and return its record.

    The record is appended to the journal and fsynced before the file moves, so a crash at
    any point leaves the file either where it was or in the trash with its record. Nothing
    in the trash is ever overwritten: each item gets a folder of its own.
    """
    item = reserve(workdir, data_dir, name)
    finish(workdir, data_dir, item)
    return item


def reserve(
    workdir: str | os.PathLike[str], data_dir: str | os.PathLike[str], name: str
) -> TrashItem:
    """The first half of move_to_trash: the item's folder and journal record, no move yet.

    Everything that takes disk space happens here, so a caller that reserves before it
    commits a removal meets a full disk while nothing has changed. A record whose file never
    moves is not an item (list_trash).
    """
    source = safe_path(data_dir, name)
    if not source.is_file():
        raise TrashError(f"no file named {name[:200]!r} in {data_dir}")
    root = trash_dir(workdir)
    with _locked(root):
        item_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        folder = root / item_id
        folder.mkdir()  # exclusive: an id is never reused
        item = TrashItem(
            id=item_id,
            name=name,
            data_dir=escape_name(str(Path(data_dir).resolve())),
            trashed_at=time.time(),
            size=source.stat().st_size,
            sha256=_sha256(source),
            # The escaped name: the journal is UTF-8 text, whatever the file was called.
            stored=str((folder / escape_name(source.name)).resolve()),
        )
        _append(root, {"event": "trashed", **asdict(item)})
    return item


def finish(
    workdir: str | os.PathLike[str], data_dir: str | os.PathLike[str], item: TrashItem
) -> None:
    """The second half of move_to_trash: move the reserved item's file into its folder."""
    source = safe_path(data_dir, item.name)
    target = Path(item.stored)
    with _locked(trash_dir(workdir)):
        target.parent.mkdir(exist_ok=True)  # `trash empty` may have taken it as left empty
        _move(source, target)
        fsync_dir(source.parent)


def list_trash(workdir: str | os.PathLike[str]) -> list[TrashItem]:
    """The items in the trash, oldest first.

    An item counts only while its file is in the trash: a record whose move never happened
    (a crash right after the journal write) or that was restored or emptied is not listed.
    """
    items: dict[str, TrashItem] = {}
    for record in _read_journal(trash_dir(workdir)):
        if record.get("event") == "trashed":
            try:
                item = TrashItem(**{k: record[k] for k in TrashItem.__dataclass_fields__})
            except (KeyError, TypeError):
                continue  # a damaged line must not hide the others
            items[item.id] = item
    present = [i for i in items.values() if os.path.lexists(i.stored)]
    return sorted(present, key=lambda i: (i.trashed_at, i.id))


def find(workdir: str | os.PathLike[str], name_or_id: str) -> TrashItem:
    """The item with this id, else the newest one trashed under this name or original path."""
    items = list_trash(workdir)
    for item in items:
        if item.id == name_or_id:
            return item
    matches = [i for i in items if name_or_id in (i.name, str(i.original))]
    if not matches:
        raise TrashError(
            f"nothing in the trash of {workdir} is named {name_or_id[:200]!r} "
            "(see: imgsim trash list)"
        )
    return matches[-1]


def restore(workdir: str | os.PathLike[str], name_or_id: str) -> Path:
    """Put a trashed file back where it came from; returns its path.

    Refuses (TrashError, nothing changed) when a file already has that name: the trash
    never overwrites a file, in either direction.
    """
    root = trash_dir(workdir)
    with _locked(root):
        item = find(workdir, name_or_id)
        target = safe_path(unescape_name(item.data_dir), item.name)
        if os.path.lexists(target):
            raise TrashError(
                f"cannot restore {item.name!r}: {target} already exists. Move that file "
                "away first, then run the restore again"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        _move(Path(item.stored), target)
        fsync_dir(target.parent)
        _append(root, {"event": "restored", "id": item.id, "at": time.time()})
        _remove_folder(Path(item.stored).parent)
    return target


def drop_restored(workdir: str | os.PathLike[str], item_id: str) -> None:
    """Forget an item whose bytes were put back where they came from by another way (an
    index add, untrash.restore_to_index): its copy in the trash goes.

    Refuses (TrashError, nothing changed) unless the original path holds a file with the
    item's SHA-256: the trash never drops the last copy of a picture.
    """
    root = trash_dir(workdir)
    with _locked(root):
        item = next((i for i in list_trash(workdir) if i.id == item_id), None)
        if item is None:
            raise TrashError(f"nothing in the trash of {workdir} has the id {item_id[:200]!r}")
        target = safe_path(unescape_name(item.data_dir), item.name)
        if not target.is_file() or _sha256(target) != item.sha256:
            raise TrashError(f"{item.name!r} is not back in its place: its trashed copy stays")
        Path(item.stored).unlink()
        _append(root, {"event": "restored", "id": item.id, "at": time.time()})
        _remove_folder(Path(item.stored).parent)


def empty(workdir: str | os.PathLike[str], older_than_days: float | None = None) -> int:
    """Delete trashed files for good (only those older than `older_than_days` when given).

    Returns how many were deleted. The journal is rewritten to hold only what remains.
    """
    if older_than_days is not None and older_than_days < 0:
        raise TrashError(f"--older-than must be 0 or more days, not {older_than_days:g}")
    root = trash_dir(workdir)
    if not root.is_dir():
        return 0
    cutoff = time.time() - (older_than_days or 0.0) * _SECONDS_PER_DAY
    with _locked(root):
        items = list_trash(workdir)
        going = [i for i in items if older_than_days is None or i.trashed_at <= cutoff]
        for item in going:
            Path(item.stored).unlink(missing_ok=True)
            _remove_folder(Path(item.stored).parent)
        for folder in (p for p in root.iterdir() if p.is_dir()):
            _remove_folder(folder)  # left empty by a move that a crash stopped
        kept = [i for i in items if i not in going]
        lines = [json.dumps({"event": "trashed", **asdict(i)}) for i in kept]
        write_text_atomic(root / TRASH_JOURNAL, "".join(f"{line}\n" for line in lines))
    return len(going)


def _move(source: Path, target: Path) -> None:
    """Move one file to a name that must not exist yet, across file systems too."""
    try:
        # link + unlink rather than rename: link fails if the target exists, rename would
        # silently replace it.
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        _copy_then_unlink(source, target)
        return
    os.unlink(source)


def _copy_then_unlink(source: Path, target: Path) -> None:
    # Another file system (or one without hard links): the copy is complete and fsynced
    # under a temporary name before it takes its name, and only then does the source go.
    partial = target.with_name(target.name + _PARTIAL)
    copy_durably(source, partial)
    try:
        os.link(partial, target)  # fails rather than overwrite
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            partial.unlink()
            raise
        if os.path.lexists(target):
            partial.unlink()
            raise FileExistsError(errno.EEXIST, "refusing to overwrite", str(target)) from exc
        os.rename(partial, target)
    else:
        partial.unlink()
    fsync_dir(target.parent)
    os.unlink(source)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _append(root: Path, record: dict) -> None:
    # One write of one line, fsynced: the record is on the disk before the caller goes on.
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    path = root / TRASH_JOURNAL
    new = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, default_file_mode())
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a line cut short by a crash must not swallow this one
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(root)


def _read_journal(root: Path) -> Iterator[dict]:
    path = root / TRASH_JOURNAL
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: the records before it still count
        if isinstance(record, dict):
            yield record


def _remove_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        for leftover in folder.glob(f"*{_PARTIAL}"):
            leftover.unlink()
        folder.rmdir()  # only if empty: never removes a file that is still trashed


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    # Several server workers and a CLI may use one trash: they take turns.
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
