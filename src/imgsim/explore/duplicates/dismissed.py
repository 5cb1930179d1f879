"""Pairs a person said are not duplicates, kept in the work folder so they are never shown again."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path

from ...core.config import NOT_DUPLICATES_FILE
from ...core.errors import ConfigError
from ...core.fileio import write_text_atomic

_lock = threading.Lock()  # one read-change-write at a time in this process


def _path(workdir: str | Path) -> Path:
    return Path(workdir) / NOT_DUPLICATES_FILE


def load_dismissed(workdir: str | Path) -> set[frozenset[str]]:
    """The pairs marked "not duplicates" in `workdir` (none when the file is absent)."""
    try:
        body = json.loads(_path(workdir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{_path(workdir)} cannot be read ({exc}); fix or remove it") from None
    pairs = body.get("pairs", []) if isinstance(body, dict) else []
    return {frozenset(p) for p in pairs if isinstance(p, list) and len(set(p)) == 2}


def group_pairs(keep: str, others: Iterable[str]) -> set[frozenset[str]]:
    """The pairs a group makes with its kept image: what "not duplicates" dismisses."""
    return {frozenset((keep, other)) for other in others if other != keep}


def change_dismissed(
    workdir: str | Path, add: Iterable[frozenset[str]] = (), remove: Iterable[frozenset[str]] = ()
) -> set[frozenset[str]]:
    """Add and remove pairs, written atomically (a crash leaves the old file or the new one);
    returns the pairs now dismissed."""
    with _lock:
        pairs = (load_dismissed(workdir) | set(add)) - set(remove)
        body = {"pairs": sorted(sorted(p) for p in pairs)}
        write_text_atomic(_path(workdir), json.dumps(body, indent=1, ensure_ascii=False) + "\n")
        return pairs
