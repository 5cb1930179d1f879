"""The review API: GET /duplicates paged and sorted, POST /duplicates/keep and /restore."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from imgsim.core.config import DUPLICATES_FILE
from imgsim.files import trash
from imgsim.search.searcher import Searcher
from imgsim.web.duplicates import wait_for_groups
from tests.duplicate_folder import PLANTED, contents, indexed_workdir, make_planted_folder

TOKEN = "review-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def dup_workdir(tmp_path: Path) -> Path:
    return indexed_workdir(tmp_path, make_planted_folder(tmp_path / "data"))


@pytest.fixture
def client(make_app: Callable[..., Flask], dup_workdir: Path) -> FlaskClient:
    searcher = Searcher.from_workdir(dup_workdir)
    return make_app(searcher, workdir=str(dup_workdir), admin_token=TOKEN).test_client()


def ready(client: FlaskClient, query: str = "") -> dict:
    """GET /duplicates once the groups of the collection as it is now are found."""
    for _ in range(20):
        response = client.get(f"/duplicates{query}")
        if response.status_code == 200 and response.get_json()["status"] == "ready":
            return response.get_json()
        assert response.status_code in (200, 202), response.get_json()
        wait_for_groups(client.application, 60)
    raise AssertionError("the groups were never ready")


def names_of(body: dict) -> list[set[str]]:
    return [{m["name"] for m in g["members"]} for g in body["groups"]]


def test_pages_of_groups_cover_every_group_once(client: FlaskClient) -> None:
    whole = ready(client)
    assert (whole["page"], whole["per_page"], whole["pages"], whole["first"]) == (1, 20, 1, 1)
    assert whole["total_groups"] == 4 and whole["sort"] == "size"
    one = ready(client, "?per_page=3")
    two = ready(client, "?per_page=3&page=2")
    assert (one["pages"], two["pages"], one["total_groups"], two["first"]) == (2, 2, 4, 4)
    assert len(one["groups"]) == 3 and len(two["groups"]) == 1
    assert names_of(one) + names_of(two) == names_of(whole)
    assert one["extras"] == two["extras"] == 4  # the whole collection's, on every page
    past = ready(client, "?per_page=3&page=3")
    assert past["groups"] == [] and past["pages"] == 2


def test_sort_by_date_puts_the_newest_picture_first(client: FlaskClient, dup_workdir: Path) -> None:
    data = dup_workdir.parent / "data"
    for age, name in enumerate(["pic_003.jpg", "pic_000.jpg", "pic_001.jpg", "pic_002.jpg"]):
        copy = next(n for group in PLANTED if name in group for n in group if n != name)
        for file in (data / name, data / copy):  # group 0 newest, then older and older
            os.utime(file, (1_700_000_000 - 86400 * age, 1_700_000_000 - 86400 * age))
    body = ready(client, "?sort=date")
    assert body["sort"] == "date"
    firsts = [next(n for n in g if n.startswith("pic_")) for g in names_of(body)]
    assert firsts == ["pic_003.jpg", "pic_000.jpg", "pic_001.jpg", "pic_002.jpg"]
    for group in body["groups"]:
        for member in group["members"]:
            assert member["captured_from"] == "file"
            assert member["captured"] == pytest.approx(member["modified"])


@pytest.mark.parametrize(
    "query",
    ["page=0", "page=x", "page=", "per_page=0", "per_page=201", "sort=name", "page=-1", "page=²"],
)
def test_bad_paging_is_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/duplicates?{query}")
    assert response.status_code == 400 and response.get_json()["error"]


def test_keep_another_member_then_restore(client: FlaskClient, dup_workdir: Path) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    group = next(g for g in ready(client)["groups"] if g["keep"] == "pic_002.jpg")
    chosen = "copies/resized.png"  # not the suggested one: a person's choice
    names = [m["name"] for m in group["members"]]
    mtime = os.stat(data / "pic_002.jpg").st_mtime
    response = client.post("/duplicates/keep", json={"keep": chosen, "names": names}, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["kept"] == chosen and body["trashed"] == ["pic_002.jpg"]
    assert body["total_images"] == 13 and len(body["ids"]) == 1
    assert (data / chosen).is_file() and not (data / "pic_002.jpg").exists()
    assert [i.name for i in trash.list_trash(dup_workdir)] == ["pic_002.jpg"]
    assert chosen not in {n for g in names_of(ready(client)) for n in g}  # its group is gone

    response = client.post("/duplicates/restore", json={"ids": body["ids"]}, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"restored": ["pic_002.jpg"], "total_images": 14}
    assert contents(data) == before and trash.list_trash(dup_workdir) == []
    assert os.stat(data / "pic_002.jpg").st_mtime == mtime  # the file's date comes back too
    assert sorted(names_of(ready(client)), key=sorted) == PLANTED
    again = client.post("/duplicates/restore", json={"ids": body["ids"]}, headers=AUTH)
    assert again.status_code == 409  # restored already: nothing in the trash by that id


def test_keep_refuses_what_was_not_shown(client: FlaskClient, dup_workdir: Path) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    group = ready(client)["groups"][0]
    names = [m["name"] for m in group["members"]]
    other = ready(client)["groups"][1]["keep"]
    refused = [
        ({"keep": names[0], "names": names[:1]}, 400),  # one name is no group
        ({"keep": "pic_009.jpg", "names": names}, 400),  # keep is not one of the names
        ({"keep": names[0], "names": [*names, other]}, 409),  # not the group as it is
        ({"keep": names[0], "names": [names[0], other]}, 409),
        ({"keep": names[0], "names": [names[0], names[0]]}, 400),
        ({"keep": names[0]}, 400),
        ({"keep": 3, "names": names}, 400),
    ]
    for body, status in refused:
        response = client.post("/duplicates/keep", json=body, headers=AUTH)
        assert response.status_code == status, body
        assert response.get_json()["error"]
    response = client.post("/duplicates/keep", json={"keep": names[0], "names": names})
    assert response.status_code == 401
    assert contents(data) == before and trash.list_trash(dup_workdir) == []


def test_restore_never_overwrites_and_changes_nothing(
    client: FlaskClient, dup_workdir: Path
) -> None:
    data = dup_workdir.parent / "data"
    group = next(g for g in ready(client)["groups"] if g["keep"] == "pic_001.jpg")
    names = [m["name"] for m in group["members"]]
    body = client.post(
        "/duplicates/keep", json={"keep": "pic_001.jpg", "names": names}, headers=AUTH
    ).get_json()
    (data / "copies" / "resaved.jpg").write_bytes(b"a new file took the name")
    response = client.post("/duplicates/restore", json={"ids": body["ids"]}, headers=AUTH)
    assert response.status_code == 409 and "move it away" in response.get_json()["error"]
    assert (data / "copies" / "resaved.jpg").read_bytes() == b"a new file took the name"
    assert [i.id for i in trash.list_trash(dup_workdir)] == body["ids"]  # still in the trash
    for ids in (["nope"], [], "x", [3]):
        response = client.post("/duplicates/restore", json={"ids": ids}, headers=AUTH)
        assert response.status_code in (400, 409) and response.get_json()["error"], ids


def test_trash_answers_the_ids_its_undo_takes(client: FlaskClient, dup_workdir: Path) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    extras = [n for g in ready(client)["groups"] for n in g["extras"]]
    body = client.post("/duplicates/trash", json={"names": extras}, headers=AUTH).get_json()
    assert sorted(i.id for i in trash.list_trash(dup_workdir)) == sorted(body["ids"])
    response = client.post("/duplicates/restore", json={"ids": body["ids"]}, headers=AUTH)
    assert response.status_code == 200 and sorted(response.get_json()["restored"]) == sorted(extras)
    assert contents(data) == before and trash.list_trash(dup_workdir) == []


def test_groups_kept_before_capture_dates_are_found_again(
    client: FlaskClient, make_app: Callable[..., Flask], dup_workdir: Path
) -> None:
    ready(client)
    kept = dup_workdir / DUPLICATES_FILE
    old = json.loads(kept.read_text(encoding="utf-8"))
    del old["layout"]
    for group in old["groups"]:
        for member in group["members"]:
            del member["captured"], member["captured_from"]
    kept.write_text(json.dumps(old), encoding="utf-8")
    other = make_app(Searcher.from_workdir(dup_workdir), workdir=str(dup_workdir)).test_client()
    assert other.get("/duplicates").get_json()["status"] == "updating"  # shown, not current
    body = ready(other)
    assert all("captured" in m for g in body["groups"] for m in g["members"])
    assert "layout" not in body
