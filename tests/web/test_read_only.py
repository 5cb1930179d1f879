"""A read-only work folder: search, browse and the map work; changes answer 503 with the reason.

The tests run as root, whom file modes do not stop, so the refusals are simulated where the
OS gives them: SQLite's read-write open, the change lock, the map's file. (A real read-only
folder, run as an unprivileged user, behaves the same: docs/security.md.)
"""

from __future__ import annotations

import contextlib
import errno
import io
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from webtest_images import image_bytes, make_image

import imgsim.explore.kept_document
import imgsim.search.editor
import imgsim.store.database
from imgsim.files.changes import CHANGES_LOCK

TOKEN = "read-only-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch, own_workdir: Path) -> Path:
    real_connect = sqlite3.connect

    class Refusing(sqlite3.Connection):
        """What a read-write open gives in a read-only folder: every statement refused."""

        def execute(self, *_args: Any) -> sqlite3.Cursor:
            raise sqlite3.OperationalError("attempt to write a readonly database")

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if not kwargs.get("uri"):
            return real_connect(database, *args, factory=Refusing, **kwargs)
        assert "mode=ro" in str(database) or "immutable=1" in str(database)
        return real_connect(database, *args, **kwargs)

    @contextlib.contextmanager
    def changing(workdir: Any) -> Iterator[None]:
        path = Path(workdir) / CHANGES_LOCK
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
        yield

    def write_document(*_args: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(imgsim.store.database.sqlite3, "connect", connect)
    monkeypatch.setattr(imgsim.search.editor, "changing", changing)
    monkeypatch.setattr(imgsim.explore.kept_document, "write_document", write_document)
    return own_workdir


def test_searching_browsing_and_the_map_work_and_changes_are_503(
    make_app: Callable[..., Flask], read_only: Path
) -> None:
    app = make_app(fresh=True, workdir=str(read_only), admin_token=TOKEN)
    client = app.test_client()
    query = image_bytes(make_image((200, 30, 30), seed=1))
    found = client.post("/search", data={"image": (io.BytesIO(query), "q.png")})
    assert found.status_code == 200 and found.get_json()["results"][0]["category"] == "red"
    assert client.get("/browse").status_code == 200
    assert client.get("/images/red_001.jpg").status_code == 200
    for _ in range(240):  # the map is computed in the background and kept in memory
        points = client.get("/map/points")
        if points.status_code != 202:
            break
        time.sleep(0.25)
    assert points.status_code == 200 and points.get_json()["status"] == "ready"

    upload = {"images": [(io.BytesIO(query), "red_050.png")]}
    for response in (
        client.post("/images", data=upload, headers=AUTH),
        client.delete("/images/red_001.jpg", headers=AUTH),
    ):
        assert response.status_code == 503
        message = response.get_json()["error"]
        assert message.startswith("the work folder cannot be written")
        assert "searching still works" in message
        assert "rebuild" not in message and "move it" not in message
    assert (read_only.parent / "data" / "red_001.jpg").is_file()
    assert not (read_only.parent / "data" / "red_050.png").exists()
