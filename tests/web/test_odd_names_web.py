"""Non-UTF-8 file names on the web: served, listed and found by their escaped name (issue #24)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import quote

from imgsim.cli.commands import main
from imgsim.files.trash import list_trash, restore

RAW = os.fsdecode(b"red_913_\xff.png")  # not UTF-8: Python holds the byte as a surrogate
NAME = "red_913_\\xff.png"  # its escaped name, as every page and answer shows it
TOKEN = "odd-names-token"


def test_a_non_utf8_name_is_served_listed_and_deleted(own_workdir: Path, make_app) -> None:
    data = own_workdir.parent / "data"
    shutil.copy(data / "red_002.png", data / RAW)
    args = ["index", "--update", "--data", str(data), "--workdir", str(own_workdir)]
    assert main(args) == 0
    client = make_app(workdir=str(own_workdir), fresh=True, admin_token=TOKEN).test_client()

    image = client.get(f"/images/{quote(NAME)}")
    assert image.status_code == 200 and image.data == (data / RAW).read_bytes()
    browse = client.get("/browse?category=red").get_json()
    listed = {item["filename"]: item["url"] for item in browse["items"]}
    assert client.get(listed[NAME]).status_code == 200  # the page's links work as they are
    similar = client.get(f"/similar/{quote(NAME)}").get_json()
    assert NAME in [r["filename"] for r in similar["results"][:2]]  # a copy of red_002

    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.delete(f"/images/{quote(NAME)}", headers=headers).status_code == 200
    assert not (data / RAW).exists()
    assert [item.name for item in list_trash(own_workdir)] == [NAME]
    restore(own_workdir, NAME)
    assert (data / RAW).exists()
