"""Organising a flat image folder into categories: plan, apply and undo collision-safe renames.

The moves themselves, their journal and `--recover` live in imgsim.files.rename_journal.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from ..core.names import IMAGE_EXTENSIONS, parse_category
from .rename_journal import (
    JOURNAL_NAME,
    LOG_NAME,
    TMP_PREFIX,
    Journal,
    RenameError,
    check_folder,
    execute,
    make_moves,
    new_token,
    read_log,
    recover,
)

__all__ = ["JOURNAL_NAME", "LOG_NAME", "TMP_PREFIX", "RenameError", "check_folder", "recover"]
_NAME_CHARS = re.compile(r"[\w-]+")  # \w: letters and digits of any script, and "_"
_PREVIEW = 5
_MAX_ATTEMPTS = 3
_T = TypeVar("_T")


@dataclass(frozen=True)
class Rename:
    """One file's move inside the folder; `category` is empty for undo moves."""

    old: str
    new: str
    category: str = ""


def list_images(folder: Path) -> list[str]:
    """Names of the visible image files directly in `folder`, in natural name order."""
    names = [
        entry.name
        for entry in os.scandir(folder)
        if not entry.name.startswith(".")
        and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS
        and entry.is_file()
    ]
    return sorted(names, key=_natural_key)


def _natural_key(name: str) -> tuple[list[tuple[int, int | str]], str]:
    # img2 before img10, as a user reading the folder expects; the raw name breaks ties.
    parts = re.split(r"(\d+)", name.casefold())
    return [(0, int(p)) if p.isdigit() else (1, p) for p in parts if p], name


def normalise_category(raw: str) -> str:
    """Return the category as used in file names, or raise RenameError saying what is wrong."""
    if "/" in raw or "\\" in raw or os.sep in raw:
        raise RenameError(f"Category {raw!r} contains a path separator.")
    # Leading/trailing "_" or "-" would not survive imgsim.core.names.parse_category's round trip.
    name = "_".join(raw.split()).lower().strip("_-")
    if not name:
        raise RenameError(f"Category {raw!r} has no letters or digits.")
    if not _NAME_CHARS.fullmatch(name):
        raise RenameError(f"Category {raw!r} may only use letters, digits, '_', '-' and spaces.")
    return name


def validate_categories(categories: Sequence[str]) -> list[str]:
    """Normalise every name and reject an empty list or duplicates."""
    names = [normalise_category(raw) for raw in categories]
    if not names:
        raise RenameError("Give at least one category.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RenameError(f"Duplicate categories: {', '.join(duplicates)}.")
    return names


def split_evenly(total: int, parts: int) -> list[int]:
    """Chunk sizes for `total` items over `parts`; earlier parts take the remainder."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def plan_renames(folder: Path, categories: Sequence[str]) -> list[Rename]:
    """Assign the sorted images to the categories in contiguous, even chunks.

    Every image gets an entry, including those whose name is already right (old == new).
    """
    names = validate_categories(categories)
    images = list_images(folder)
    if not images:
        raise RenameError(f"No images in {folder} ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
    if len(names) > len(images):
        raise RenameError(f"{len(names)} categories but only {len(images)} images.")
    # Casefolded so a plan is also safe on case-insensitive file systems (macOS, Windows).
    image_keys = {n.casefold() for n in images}
    taken = {n.casefold() for n in os.listdir(folder)} - image_keys
    plan: list[Rename] = []
    start = 0
    for name, size in zip(names, split_evenly(len(images), len(names)), strict=True):
        plan.extend(_name_chunk(name, images[start : start + size], taken))
        start += size
    return plan


def _name_chunk(category: str, chunk: list[str], taken: set[str]) -> list[Rename]:
    width = max(3, len(str(len(chunk))))
    number = 0
    out = []
    for old in chunk:
        suffix = Path(old).suffix.lower()
        while True:
            number += 1
            new = f"{category}_{number:0{width}d}{suffix}"
            if new.casefold() not in taken:
                break
        out.append(Rename(old, new, category))
    return out


def describe_plan(plan: Sequence[Rename]) -> list[str]:
    """Human-readable summary: files per category, then the first few moves."""
    counts: dict[str, int] = {}
    for r in plan:
        counts[r.category] = counts.get(r.category, 0) + 1
    lines = [f"Plan: {len(plan)} images into {len(counts)} categories"]
    lines += [f"  {name}: {count} files" for name, count in counts.items()]
    if min(counts.values(), default=0) < 2:
        lines.append("Note: training needs at least 2 images in every category.")
    # One shared prefix is just a camera's IMG_0001; two or more mean an organised folder.
    existing = sorted({c for r in plan if (c := parse_category(r.old))})
    if len(existing) > 1:
        lines.append(
            f"Note: the names already carry categories ({', '.join(existing[:_PREVIEW])}); "
            "this plan reassigns images by name order, not by those categories."
        )
    lines += _describe_moves([r for r in plan if r.old != r.new])
    unchanged = sum(1 for r in plan if r.old == r.new)
    if unchanged:
        lines.append(f"  ({unchanged} files already have their planned name and stay as they are)")
    return lines


def _describe_moves(moves: Sequence[Rename]) -> list[str]:
    lines = [f"  {r.old} -> {r.new}" for r in moves[:_PREVIEW]]
    if len(moves) > _PREVIEW:
        lines.append(f"  ... and {len(moves) - _PREVIEW} more")
    return lines


def apply_plan(folder: Path, plan: Sequence[Rename]) -> Path:
    """Perform every move in `plan` through the journal; on failure undo it and raise RenameError.

    Returns the log file, where the run is recorded once it is complete. Files whose name is
    already right are not touched or logged.
    """
    moves = [r for r in plan if r.old != r.new]
    log = folder / LOG_NAME
    if not moves:
        return log
    check_folder(folder, subfolders=False)
    _check_moves(folder, moves, "Cannot rename")
    token = new_token()
    record = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "token": token,
        "renames": [{"old": r.old, "new": r.new} for r in moves],
    }
    pairs = [(r.old, r.new) for r in moves]
    execute(folder, Journal("rename", make_moves(token, pairs), record))
    return log


def _check_moves(folder: Path, moves: Sequence[Rename], action: str) -> None:
    # Checked up front so a refusal changes nothing at all.
    leaving = {r.old.casefold() for r in moves}
    problems = [f"{r.old} is missing" for r in moves if not (folder / r.old).is_file()]
    problems += [
        f"{r.new} already exists"
        for r in moves
        if r.new.casefold() not in leaving and os.path.lexists(folder / r.new)
    ]
    if problems:
        shown = "; ".join(problems[:_PREVIEW])
        more = f" (and {len(problems) - _PREVIEW} more)" if len(problems) > _PREVIEW else ""
        raise RenameError(f"{action}: {shown}{more}. Nothing was changed.")


def undo_plan(folder: Path) -> tuple[str, list[Rename]]:
    """The most recent logged run as (timestamp, moves that reverse it); RenameError if none."""
    runs = read_log(folder)
    if not runs:
        raise RenameError(f"Nothing to undo: no logged rename in {folder}.")
    entry = runs[-1]
    try:
        moves = [Rename(str(r["new"]), str(r["old"])) for r in entry["renames"]]
        timestamp = str(entry.get("timestamp", "unknown time"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise RenameError(f"The last entry of {folder / LOG_NAME} is damaged.") from exc
    # A hand-edited log must not be able to move files out of the folder.
    for name in (n for r in moves for n in (r.old, r.new)):
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise RenameError(f"The rename log names {name!r}, which is not a plain file name.")
    return timestamp, moves


def undo_last(folder: Path) -> int:
    """Reverse the most recent logged run, then drop it from the log; returns files restored."""
    check_folder(folder, subfolders=False)
    _, moves = undo_plan(folder)
    _check_moves(folder, moves, "Cannot undo")
    pairs = [(r.old, r.new) for r in moves]
    execute(folder, Journal("undo", make_moves(new_token(), pairs), read_log(folder)[-1]))
    return len(moves)


def ask_categories(
    max_count: int, input_fn: Callable[[str], str], print_fn: Callable[[str], None]
) -> list[str]:
    """Ask how many categories, then each name, re-asking a few times on a bad answer."""
    count = _ask(
        f"How many categories (1-{max_count})? ",
        lambda raw: _parse_count(raw, max_count),
        input_fn,
        print_fn,
    )
    print_fn(f"Enter {count} categories:")
    names: list[str] = []
    for i in range(1, count + 1):
        names.append(
            _ask(f"  Category {i}/{count}: ", lambda raw: _new_name(raw, names), input_fn, print_fn)
        )
    return names


def _ask(
    prompt: str,
    parse: Callable[[str], _T],
    input_fn: Callable[[str], str],
    print_fn: Callable[[str], None],
) -> _T:
    for _ in range(_MAX_ATTEMPTS):
        try:
            return parse(input_fn(prompt))
        except RenameError as exc:
            print_fn(str(exc))
    raise RenameError("Too many invalid answers; nothing was renamed.")


def _parse_count(raw: str, max_count: int) -> int:
    try:
        count = int(raw.strip())
    except ValueError:
        raise RenameError(f"{raw.strip()!r} is not a whole number.") from None
    if not 1 <= count <= max_count:
        raise RenameError(f"Choose between 1 and {max_count} (one image at least per category).")
    return count


def _new_name(raw: str, taken: list[str]) -> str:
    name = normalise_category(raw)
    if name in taken:
        raise RenameError(f"{name!r} is already a category.")
    return name


def run(
    folder: Path,
    categories: list[str] | None = None,
    dry_run: bool = False,
    undo: bool = False,
    yes: bool = False,
    input_fn: Callable[[str], str] = input,
    print_fn: Callable[[str], None] = print,
    recover_run: bool = False,
) -> int:
    """CLI entry: returns a process exit code (0 ok, 1 error with a clear printed message)."""
    folder = Path(folder)
    try:
        if not folder.is_dir():
            raise RenameError(f"Folder not found: {folder}")
        if recover_run:
            if categories is not None or undo or dry_run:
                raise RenameError("--recover takes no --categories, --undo or --dry-run.")
            return _run_recover(folder, print_fn)
        check_folder(folder, subfolders=False)  # a half-renamed folder: --recover first
        if undo:
            if categories is not None:
                raise RenameError("--undo reverses the last run; it takes no --categories.")
            return _run_undo(folder, dry_run, print_fn)
        return _run_rename(folder, categories, dry_run, yes, input_fn, print_fn)
    except (RenameError, OSError) as exc:
        print_fn(f"Error: {exc}")
    except (EOFError, KeyboardInterrupt):
        print_fn("Cancelled.")
    return 1


def _run_rename(
    folder: Path,
    categories: list[str] | None,
    dry_run: bool,
    yes: bool,
    input_fn: Callable[[str], str],
    print_fn: Callable[[str], None],
) -> int:
    if categories is None:
        images = list_images(folder)
        if not images:
            raise RenameError(f"No images in {folder}.")
        categories = ask_categories(len(images), input_fn, print_fn)
    plan = plan_renames(folder, categories)
    for line in describe_plan(plan):
        print_fn(line)
    moves = [r for r in plan if r.old != r.new]
    if not moves:
        print_fn("Every image already has its planned name; nothing to do.")
        return 0
    if dry_run:
        print_fn("Dry run: nothing was renamed.")
        return 0
    if not yes and not _confirm(f"Rename {len(moves)} files? [y/N] ", input_fn):
        print_fn("Nothing was renamed.")
        return 1
    log = apply_plan(folder, plan)
    print_fn(f"Renamed {len(moves)} files in {folder} (log: {log.name}).")
    print_fn(f"To undo: imgsim rename {shlex.quote(str(folder))} --undo")
    return 0


def _run_undo(folder: Path, dry_run: bool, print_fn: Callable[[str], None]) -> int:
    timestamp, moves = undo_plan(folder)
    print_fn(f"Undo of the rename from {timestamp}: {len(moves)} files")
    for line in _describe_moves(moves):
        print_fn(line)
    if dry_run:
        print_fn("Dry run: nothing was renamed.")
        return 0
    restored = undo_last(folder)
    print_fn(f"Restored {restored} files to their earlier names.")
    return 0


def _run_recover(folder: Path, print_fn: Callable[[str], None]) -> int:
    outcome = recover(folder)
    if outcome is None:
        print_fn(f"Nothing to recover in {folder}.")
        return 0
    print_fn(f"Recovered: {outcome}.")
    if outcome.startswith("finished"):
        print_fn(f"To undo: imgsim rename {shlex.quote(str(folder))} --undo")
    return 0


def _confirm(prompt: str, input_fn: Callable[[str], str]) -> bool:
    try:
        answer = input_fn(prompt)
    except EOFError:
        # No terminal (piped or scheduled): only --yes may approve.
        return False
    return answer.strip().lower() in ("y", "yes")
