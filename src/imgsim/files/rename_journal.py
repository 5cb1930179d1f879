"""Carrying out a batch of renames in one folder so that no crash can lose or hide a file.

A journal naming every move is written and fsynced before the first rename. The moves go in
two phases through temporary names that stay visible images (`imgsim_tmp_<token>_<i>.jpg`),
and the journal records when the first phase is complete. After a kill at any moment, the
journal and the names on disk say exactly where each file is, so `recover` can finish the run
(or, if that is impossible, put every file back). The log of finished runs, which `--undo`
reads, is kept here too.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.errors import RenameError
from ..core.fileio import fsync_dir, write_text_atomic
from .folders import skipped
from .folders import subfolders as list_subfolders

LOG_NAME = ".imgsim_rename_log.json"
JOURNAL_NAME = ".imgsim_rename_journal.json"
# Visible and with the file's own extension: an interrupted run never hides an image from a
# folder scan, a file manager or a backup.
TMP_PREFIX = "imgsim_tmp_"
LEGACY_TMP_PREFIX = ".imgsim_tmp_"  # hidden, extension-less names of imgsim before the journal
FORWARD, BACK = "forward", "back"


class InterruptedRenameError(RenameError):
    """A folder that an interrupted `imgsim rename` left half renamed."""


@dataclass
class Move:
    """One file's journey: `old` → `tmp` (phase 1) → `new` (phase 2)."""

    old: str
    tmp: str
    new: str


@dataclass
class Journal:
    """What a run is doing, on disk while it runs.

    `record` is the log entry a finished rename appends, or the entry a finished undo drops.
    """

    action: str  # "rename" or "undo"
    moves: list[Move]
    record: dict
    phase: int = 1
    direction: str = FORWARD
    version: int = 1
    stuck: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> Journal:
        moves = [Move(str(m["old"]), str(m["tmp"]), str(m["new"])) for m in data["moves"]]
        for name in (n for m in moves for n in (m.old, m.tmp, m.new)):
            if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
                raise ValueError(f"{name!r} is not a plain file name")
        return cls(
            str(data["action"]), moves, dict(data["record"]), int(data["phase"]),
            str(data["direction"]),
        )  # fmt: skip


def new_token() -> str:
    """A token that makes this run's temporary names unique."""
    return secrets.token_hex(4)


def temp_name(token: str, i: int, old: str) -> str:
    """The temporary name of the i-th move: visible, with the file's extension."""
    return f"{TMP_PREFIX}{token}_{i}{Path(old).suffix}"


def execute(folder: Path, journal: Journal) -> None:
    """Write the journal, then carry out its moves; RenameError if they cannot all be made.

    On a failure every file is put back under its old name and the journal removed; if even
    that fails, the journal stays and the message says to run `imgsim rename --recover`.
    """
    _write_journal(folder, journal)
    cause = _run(folder, journal)
    if cause is None:
        return
    if isinstance(cause, KeyboardInterrupt):
        raise cause
    raise RenameError(
        f"{_action(journal)} stopped ({_reason(cause)}). Every file is back under its "
        "original name."
    ) from cause


def recover(folder: Path) -> str | None:
    """Finish (or, failing that, roll back) an interrupted run; says what happened, or None."""
    journal = read_journal(folder)
    if journal is None:
        return None
    cause = _run(folder, journal)
    if cause is None:
        return f"finished the interrupted {journal.action}: {len(journal.moves)} files"
    return (
        f"could not finish the interrupted {journal.action} ({_reason(cause)}); every file "
        "is back under its name from before it"
    )


def _action(journal: Journal) -> str:
    return "Undo" if journal.action == "undo" else "Renaming"


def _reason(cause: BaseException) -> str:
    return str(cause) or type(cause).__name__


def _run(folder: Path, journal: Journal) -> BaseException | None:
    """Go forward, or back after a failure; the failure's cause, or None once finished.

    RenameError when even going back fails: the journal stays for --recover.
    """
    cause: BaseException = RenameError("it was being rolled back")
    if journal.direction == FORWARD:
        try:
            _forward(folder, journal)
            return None
        except BaseException as exc:  # Ctrl-C too: never leave files under temporary names
            cause = exc
            journal.direction = BACK
            _write_journal(folder, journal)
    stuck = _back(folder, journal)
    if stuck:
        raise RenameError(
            f"{_action(journal)} stopped ({_reason(cause)}) and these files could not be put "
            f"back: {', '.join(stuck[:10])}. Fix the cause, then run: imgsim rename "
            f"{folder} --recover"
        ) from cause
    if journal.action == "legacy":  # its log entry was written before it started
        runs = read_log(folder)
        if runs and runs[-1] == journal.record:
            write_log(folder, runs[:-1])
    (folder / JOURNAL_NAME).unlink(missing_ok=True)
    fsync_dir(folder)
    return cause


def _forward(folder: Path, journal: Journal) -> None:
    if journal.phase == 1:
        for m in journal.moves:
            if not os.path.lexists(folder / m.tmp):
                _move(folder, m.old, m.tmp)
        fsync_dir(folder)  # every phase-1 rename is on the disk before the journal says so
        journal.phase = 2
        _write_journal(folder, journal)
    for m in journal.moves:
        if os.path.lexists(folder / m.tmp):
            _move(folder, m.tmp, m.new)
    fsync_dir(folder)
    _finish_log(folder, journal)
    (folder / JOURNAL_NAME).unlink(missing_ok=True)  # a legacy run may never have written one
    fsync_dir(folder)


def _back(folder: Path, journal: Journal) -> list[str]:
    """Put every file back under its old name; returns "current -> wanted" for failures."""
    stuck: list[str] = []
    if journal.phase == 2:
        # In phase 2 each file is at its tmp or its new name, and a new name holds only it.
        for m in reversed(journal.moves):
            if not os.path.lexists(folder / m.tmp) and os.path.lexists(folder / m.new):
                _try(folder, m.new, m.tmp, stuck)
        if stuck:
            return stuck
        fsync_dir(folder)
        journal.phase = 1
        _write_journal(folder, journal)
    for m in reversed(journal.moves):
        if os.path.lexists(folder / m.tmp):
            _try(folder, m.tmp, m.old, stuck)
    fsync_dir(folder)
    return stuck


def _try(folder: Path, src: str, dst: str, stuck: list[str]) -> None:
    try:
        _move(folder, src, dst)
    except OSError:
        stuck.append(f"{src} -> {dst}")


def _move(folder: Path, src: str, dst: str) -> None:
    # os.rename silently replaces an existing file on POSIX; refuse instead.
    if os.path.lexists(folder / dst):
        raise FileExistsError(errno.EEXIST, "refusing to overwrite", str(folder / dst))
    os.rename(folder / src, folder / dst)


def _finish_log(folder: Path, journal: Journal) -> None:
    # Idempotent, since a kill can come between this and the journal's removal.
    runs = read_log(folder)
    last = runs[-1] if runs else None
    if journal.action == "rename" and last != journal.record:
        write_log(folder, [*runs, journal.record])
    elif journal.action == "undo" and last == journal.record:
        write_log(folder, runs[:-1])


def _write_journal(folder: Path, journal: Journal) -> None:
    data = asdict(journal)
    data.pop("stuck")
    write_text_atomic(folder / JOURNAL_NAME, json.dumps(data) + "\n")


def read_journal(folder: Path) -> Journal | None:
    """The journal of an interrupted run in `folder` (or one rebuilt for an older imgsim)."""
    path = folder / JOURNAL_NAME
    if not path.exists():
        return _legacy_journal(folder)
    try:
        return Journal.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RenameError(
            f"The rename journal {path} is damaged ({exc}); nothing was changed. Its "
            "'moves' list old -> tmp -> new names: rename the files by hand, then remove it."
        ) from exc


def _legacy_journal(folder: Path) -> Journal | None:
    # imgsim before the journal logged the run first and moved files through hidden,
    # extension-less names; its log entry is enough to finish such a run.
    runs = read_log(folder) if (folder / LOG_NAME).exists() else []
    prefix = str(runs[-1].get("tmp_prefix", "")) if runs else ""
    if not prefix.startswith(LEGACY_TMP_PREFIX) or "/" in prefix:
        return None
    try:
        renames = runs[-1]["renames"]
        moves = [Move(str(r["old"]), f"{prefix}{i}", str(r["new"])) for i, r in enumerate(renames)]
    except (KeyError, TypeError):
        return None
    if not moves or not any(os.path.lexists(folder / m.tmp) for m in moves):
        return None
    # The old order was the same: all of phase 1, then phase 2; the last tmp shows which.
    phase = 2 if os.path.lexists(folder / moves[-1].tmp) else 1
    return Journal("legacy", moves, runs[-1], phase=phase)


def check_folder(folder: str | os.PathLike[str], subfolders: bool = True) -> None:
    """InterruptedRenameError if `folder` (or a folder directly in it) is half renamed.

    Every command that reads an image folder calls it first: a half-renamed folder would
    look like a different dataset (temporary names, missing categories).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return  # not a folder: the command says so itself
    # An unreadable sub-folder (or a symlink loop) is skipped with a warning: the walk that
    # lists the images skips it too, so a journal in it cannot change what the command sees.
    candidates = [folder, *(list_subfolders(folder) if subfolders else [])]
    for path in candidates:
        if _has_journal(path):
            raise InterruptedRenameError(
                f"an interrupted `imgsim rename` left {path} half renamed: run "
                f"`imgsim rename {path} --recover` first (it finishes the run; "
                "`--undo` afterwards reverses it)"
            )


def _has_journal(folder: Path) -> bool:
    try:
        return (folder / JOURNAL_NAME).exists() or _legacy_journal_safe(folder)
    except OSError as exc:  # PermissionError for a folder we cannot enter
        skipped(folder, exc)
        return False


def _legacy_journal_safe(folder: Path) -> bool:
    if not (folder / LOG_NAME).exists():
        return False
    try:
        return _legacy_journal(folder) is not None
    except RenameError:
        return False


def read_log(folder: Path) -> list[dict]:
    """The finished runs of `folder`, oldest first."""
    path = folder / LOG_NAME
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RenameError(f"Cannot read the rename log {path}: {exc}") from exc
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list):
        raise RenameError(f"{path} is not an imgsim rename log; move it away to continue.")
    return runs


def write_log(folder: Path, runs: list[dict]) -> None:
    """Replace the log of finished runs (removed when none is left)."""
    path = folder / LOG_NAME
    if not runs:
        path.unlink(missing_ok=True)
        return
    write_text_atomic(path, json.dumps({"version": 1, "runs": runs}, indent=2) + "\n")


def make_moves(token: str, pairs: Sequence[tuple[str, str]]) -> list[Move]:
    """Moves for (old, new) pairs through this run's temporary names."""
    return [Move(old, temp_name(token, i, old), new) for i, (old, new) in enumerate(pairs)]
