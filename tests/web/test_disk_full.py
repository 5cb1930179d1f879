"""A full disk under POST and DELETE /images: 507 with a reason, and nothing half written."""

from __future__ import annotations

import errno
import io
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from webtest_images import image_bytes, make_image

import imgsim.files.staging
import imgsim.files.trash
import imgsim.store.faiss_store
from imgsim.files.staging import STAGING_DIR
from imgsim.files.trash import list_trash

TOKEN = "disk-full-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(make_app: Callable[..., Flask], own_workdir: Path) -> FlaskClient:
    app = make_app(fresh=True, workdir=str(own_workdir), admin_token=TOKEN)
    return app.test_client()


def enospc(*_args: Any, **_kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def sqlite_full(*_args: Any, **_kwargs: Any) -> None:
    raise sqlite3.OperationalError("database or disk is full")


def post(client: FlaskClient, name: str, data: bytes) -> Any:
    body = {"images": [(io.BytesIO(data), name)]}
    return client.post("/images", data=body, headers=AUTH)


def state(client: FlaskClient, work: Path) -> tuple[int, list[str], list[str]]:
    """Images indexed, files waiting in staging, items in the trash."""
    staging = work / STAGING_DIR
    waiting = sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []
    total = client.get("/stats").get_json()["total_images"]
    return total, waiting, [i.name for i in list_trash(work)]


# Where a full disk can meet an upload: its file, its intent, the trash record of the image
# it replaces, and the database commit.
FAILURES = {
    "staged file": (imgsim.files.staging, "_write_synced", enospc),
    "intent": (imgsim.files.staging.os, "fsync", enospc),
    "trash record": (imgsim.files.trash, "_append", enospc),
    "commit": (imgsim.store.faiss_store, "insert_rows", sqlite_full),
}


@pytest.mark.parametrize("where", list(FAILURES))
@pytest.mark.parametrize("name", ["red_009.png", "red_001.jpg"])  # new, and a replacement
def test_an_upload_on_a_full_disk_is_507_and_changes_nothing(
    client: FlaskClient, own_workdir: Path, monkeypatch: pytest.MonkeyPatch, where: str, name: str
) -> None:
    data_dir = own_workdir.parent / "data"
    target = data_dir / name
    before_bytes = target.read_bytes() if target.exists() else None
    before = state(client, own_workdir)
    upload = image_bytes(make_image((10, 10, 250), seed=77))
    module, attribute, failure = FAILURES[where]
    with monkeypatch.context() as patch:
        patch.setattr(module, attribute, failure)
        response = post(client, name, upload)
    if where == "trash record" and before_bytes is None:
        assert response.status_code == 201  # nothing replaced: no trash record to write
        return
    assert response.status_code == 507, response.get_json()
    message = response.get_json()["error"]
    assert message.startswith("the disk is full: nothing was added")
    assert "rebuild" not in message and "move it" not in message
    assert state(client, own_workdir) == before
    assert (target.read_bytes() if target.exists() else None) == before_bytes
    # Once there is space again, the same upload goes through.
    assert post(client, name, upload).status_code == 201
    assert target.read_bytes() == upload


@pytest.mark.parametrize("where", ["trash record", "commit"])
def test_a_delete_on_a_full_disk_is_507_and_changes_nothing(
    client: FlaskClient, own_workdir: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    target = own_workdir.parent / "data" / "red_001.jpg"
    before = state(client, own_workdir)
    failure = (imgsim.files.trash, "_append", enospc) if where == "trash record" else None
    failure = failure or (imgsim.store.faiss_store, "delete_paths", sqlite_full)
    with monkeypatch.context() as patch:
        patch.setattr(*failure)
        response = client.delete("/images/red_001.jpg", headers=AUTH)
    assert response.status_code == 507, response.get_json()
    assert response.get_json()["error"].startswith("the disk is full: nothing was removed")
    assert state(client, own_workdir) == before and target.is_file()
    assert client.get("/images/red_001.jpg").status_code == 200
    assert client.delete("/images/red_001.jpg", headers=AUTH).status_code == 200
    assert not target.exists() and [i.name for i in list_trash(own_workdir)] == ["red_001.jpg"]
