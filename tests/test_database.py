"""The embedded store's database: the generation every search checks, read cheaply and exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imgsim.store.base import ConcurrentChangeError
from imgsim.store.database import Database


def statements(db: Database) -> list[str]:
    """Record the SQL this database's connection runs from now on."""
    seen: list[str] = []
    db._connection().set_trace_callback(seen.append)
    return seen


def test_an_unchanged_generation_costs_one_pragma(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    with db.transaction():
        pass
    assert db.generation() == 1
    seen = statements(db)
    assert db.generation() == 1
    assert seen == ["PRAGMA data_version"]


def test_a_commit_by_another_connection_is_seen(tmp_path: Path) -> None:
    reader, writer = Database(tmp_path / "m.db"), Database(tmp_path / "m.db")
    assert reader.generation() == 0
    with writer.transaction():
        pass
    assert reader.generation() == 1
    with writer.transaction():
        pass
    assert reader.generation() == 2


def test_a_commit_by_another_process_is_seen(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    assert db.generation() == 0
    code = (
        "from imgsim.store.database import Database\n"
        f"with Database({str(tmp_path / 'm.db')!r}).transaction():\n    pass\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert db.generation() == 1


def test_own_commits_and_rollbacks_are_seen(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    with db.transaction():
        assert db.generation() == 1  # inside: this connection's own uncommitted bump
    assert db.generation() == 1
    with pytest.raises(RuntimeError), db.transaction():
        assert db.generation() == 2
        raise RuntimeError("undo")
    assert db.generation() == 1  # rolled back: the bump read inside is not kept
    with pytest.raises(ConcurrentChangeError), db.transaction(expected=0):
        pass
    assert db.generation() == 1
    db.close()
    assert db.generation() == 1
