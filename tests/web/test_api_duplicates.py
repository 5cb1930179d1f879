"""GET /duplicates, POST /duplicates/trash and the page: groups, cache, token, the trash."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from imgsim.core.config import DUPLICATES_FILE, DuplicatesConfig
from imgsim.explore.duplicates import StoreFinder
from imgsim.explore.duplicates.dismissed import load_dismissed
from imgsim.explore.duplicates.kept import KeptDuplicates
from imgsim.files import trash
from imgsim.search.searcher import NotReadyError, Searcher
from imgsim.web.app import CSP
from imgsim.web.duplicates import embed_views, wait_for_groups
from tests.duplicate_folder import PLANTED, contents, indexed_workdir, make_planted_folder

TOKEN = "s3cret-token"
HASH = DuplicatesConfig(method="hash", workers=1)


@pytest.fixture
def dup_workdir(tmp_path: Path) -> Path:
    return indexed_workdir(tmp_path, make_planted_folder(tmp_path / "data"))


@pytest.fixture
def dup_app(make_app: Callable[..., Flask], dup_workdir: Path) -> Flask:
    searcher = Searcher.from_workdir(dup_workdir)
    return make_app(searcher, workdir=str(dup_workdir), admin_token=TOKEN)


@pytest.fixture
def dup_client(dup_app: Flask) -> FlaskClient:
    return dup_app.test_client()


def member_sets(body: dict) -> list[set[str]]:
    return sorted(({m["name"] for m in g["members"]} for g in body["groups"]), key=sorted)


def groups(client: FlaskClient, query: str = "") -> dict:
    """GET /duplicates once the groups for the collection as it is now are found."""
    for _ in range(20):
        response = client.get(f"/duplicates{query}")
        if response.status_code == 200 and response.get_json()["status"] == "ready":
            return response.get_json()
        assert response.status_code in (200, 202), response.get_json()
        wait_for_groups(client.application, 60)
    raise AssertionError("the groups were never ready")


def test_the_first_answer_is_202_then_the_groups(dup_client: FlaskClient) -> None:
    first = dup_client.get("/duplicates")
    assert first.status_code == 202 and first.headers["Retry-After"] == "2"
    assert first.get_json() == {"status": "computing", "retry_after": 2}
    wait_for_groups(dup_client.application, 60)
    assert dup_client.get("/duplicates").get_json()["status"] == "ready"


def test_groups_of_the_index_with_image_urls(dup_client: FlaskClient) -> None:
    body = groups(dup_client)
    assert set(body) >= {"status", "groups", "images"} and "generation" not in body
    assert body["images"] == 14 and body["method"] == "confirmed" and body["extras"] == 4
    assert member_sets(body) == PLANTED
    assert sorted(g["tier"] for g in body["groups"]) == ["near duplicate"] * 3 + ["same picture"]
    for group in body["groups"]:
        assert group["members"][0]["keep"] and group["members"][0]["name"] == group["keep"]
        for member in group["members"]:
            assert dup_client.get(member["url"]).status_code == 200


def test_the_answer_is_kept_until_the_index_changes(
    dup_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsim.explore.duplicates import stored

    calls, decoded = [], []
    real = StoreFinder.find
    monkeypatch.setattr(StoreFinder, "find", lambda self, *a: calls.append(1) or real(self, *a))
    real_derive = stored.iter_derived
    monkeypatch.setattr(
        stored,
        "iter_derived",
        lambda records, *a: decoded.append(len(records)) or real_derive(records, *a),
    )
    first = groups(dup_client)
    assert groups(dup_client)["groups"] == first["groups"]
    assert len(calls) == 1
    groups(dup_client, "?threshold=0")  # other settings: their own answer
    assert len(calls) == 2
    extra = first["groups"][0]["extras"]
    response = dup_client.post("/duplicates/trash", json={"names": extra}, headers=auth())
    assert response.status_code == 200
    updating = dup_client.get("/duplicates").get_json()  # the earlier groups meanwhile
    assert updating["status"] == "updating" and updating["groups"] == first["groups"]
    after = groups(dup_client)
    assert len(after["groups"]) == 3 and after["images"] == 14 - len(extra)
    # Decoded once (the index was built from vectors alone); every later search (other
    # settings, after the trash) reads the fingerprints kept in the store.
    assert decoded[0] == 14 and not any(decoded[1:])


def test_other_server_processes_read_the_kept_groups(
    dup_client: FlaskClient, make_app: Callable[..., Flask], dup_workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    first = groups(dup_client)
    assert (dup_workdir / DUPLICATES_FILE).is_file()
    monkeypatch.setattr(StoreFinder, "find", lambda *a: pytest.fail("found again"))
    other = make_app(Searcher.from_workdir(dup_workdir), workdir=str(dup_workdir))
    assert groups(other.test_client())["groups"] == first["groups"]


def test_a_failed_search_is_500_and_tried_again_after_a_change(
    dup_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(StoreFinder, "find", broken)
    assert dup_client.get("/duplicates").status_code == 202
    wait_for_groups(dup_client.application, 60)
    response = dup_client.get("/duplicates")
    assert response.status_code == 500 and "disk on fire" in response.get_json()["error"]
    monkeypatch.undo()
    assert groups(dup_client, "?threshold=9")["images"] == 14  # other settings: a new try


@pytest.mark.parametrize(
    "query",
    ["method=magic", "threshold=99", "threshold=x", "threshold=", "embedding_threshold=2"],
)
def test_bad_settings_are_400(dup_client: FlaskClient, query: str) -> None:
    response = dup_client.get(f"/duplicates?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_embedding_method_answers_with_similarities(dup_client: FlaskClient) -> None:
    body = groups(dup_client, "?method=both")
    assert body["method"] == "both"
    extras = [m for g in body["groups"] for m in g["members"][1:]]
    assert all(m["similarity"] is not None or m["hash_distance"] is not None for m in extras)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_trash_moves_the_extras_into_the_trash_never_unlinks(
    dup_client: FlaskClient, dup_workdir: Path
) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    body = groups(dup_client)
    extras = [n for g in body["groups"] for n in g["extras"]]
    response = dup_client.post("/duplicates/trash", json={"names": extras}, headers=auth())
    assert response.status_code == 200
    assert sorted(response.get_json()["trashed"]) == sorted(extras)
    assert response.get_json()["total_images"] == 14 - len(extras)
    in_trash = {item.name: item for item in trash.list_trash(dup_workdir)}
    assert sorted(in_trash) == sorted(extras)
    for name in extras:
        assert not (data / name).exists()
        assert in_trash[name].sha256 == before[name]  # the same bytes wait in the trash
        assert Path(in_trash[name].stored).is_file()
    for group in body["groups"]:
        assert (data / group["keep"]).is_file()
        assert dup_client.get(f"/images/{group['keep']}").status_code == 200
    assert groups(dup_client)["groups"] == []


def test_a_trash_right_after_another_waits_for_the_new_groups(dup_client: FlaskClient) -> None:
    one, two = groups(dup_client)["groups"][:2]
    for group in (one, two):
        response = dup_client.post(
            "/duplicates/trash", json={"names": group["extras"]}, headers=auth()
        )
        assert response.status_code == 200, response.get_json()
    assert len(groups(dup_client)["groups"]) == 2


def test_a_keeper_or_unknown_name_changes_nothing(
    dup_client: FlaskClient, dup_workdir: Path
) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    body = groups(dup_client)
    group = body["groups"][0]
    for names in ([group["keep"]], [*group["extras"], group["keep"]], ["pic_009.jpg"]):
        response = dup_client.post("/duplicates/trash", json={"names": names}, headers=auth())
        assert response.status_code == 409, names
    assert contents(data) == before and trash.list_trash(dup_workdir) == []


@pytest.mark.parametrize(
    "payload", [None, {}, {"names": []}, {"names": "a.jpg"}, {"names": [1]}, ["a.jpg"]]
)
def test_malformed_trash_requests_are_400(dup_client: FlaskClient, payload: object) -> None:
    response = dup_client.post("/duplicates/trash", json=payload, headers=auth())
    assert response.status_code == 400


def test_trash_needs_the_token(
    dup_client: FlaskClient, make_app: Callable[..., Flask], dup_workdir: Path
) -> None:
    extras = groups(dup_client)["groups"][0]["extras"]
    response = dup_client.post("/duplicates/trash", json={"names": extras}, headers=auth("x"))
    assert response.status_code == 401
    assert dup_client.post("/duplicates/trash", json={"names": extras}).status_code == 401
    off = make_app(Searcher.from_workdir(dup_workdir), workdir=str(dup_workdir)).test_client()
    assert off.post("/duplicates/trash", json={"names": extras}).status_code == 403
    assert trash.list_trash(dup_workdir) == []


def test_the_views_helper_finds_the_groups_the_web_layer_serves(dup_workdir: Path) -> None:
    # The duplicates view's helper, used as a library, gets the same groups.
    searcher = Searcher.from_workdir(dup_workdir)
    kept = KeptDuplicates(searcher.workdir, partial(embed_views, searcher))
    try:
        first = kept.current(searcher.ready(), DuplicatesConfig())
        assert first.document is None and first.computing
        kept.wait(60)
        state = kept.current(searcher.ready(), DuplicatesConfig())
        assert state.status == "ready" and member_sets(state.document) == PLANTED
    finally:
        searcher.store.close()
    with pytest.raises(NotReadyError):  # what the view answers with 503
        Searcher.from_workdir(dup_workdir.parent / "empty").ready()


def test_without_an_index_503(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    client = make_app(Searcher.from_workdir(tmp_path), workdir=str(tmp_path)).test_client()
    response = client.get("/duplicates")
    assert response.status_code == 503
    assert "imgsim" in response.get_json()["error"]


def test_the_page_and_the_nav_link(client: FlaskClient) -> None:
    page = client.get("/duplicates/view")
    assert page.status_code == 200 and page.headers["Content-Security-Policy"] == CSP
    html = page.get_data(as_text=True)
    assert "duplicates.js" in html and "duplicates.css" in html
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    assert 'href="/duplicates/view"' in client.get("/").get_data(as_text=True)
    assert '<a href="/">Search</a>' in html  # and back
    for path in ("/duplicates/view", "/static/duplicates.js", "/static/duplicates.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        text = response.get_data(as_text=True)
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path
    script = client.get("/static/duplicates.js").get_data(as_text=True)
    for risky in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]:
        assert risky not in script


def test_not_duplicates_is_remembered_and_can_be_undone(
    dup_client: FlaskClient, dup_workdir: Path
) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    group = next(g for g in groups(dup_client)["groups"] if not g["exact"])
    names = [group["keep"], *group["extras"]]
    refused = dup_client.post("/duplicates/not-duplicates", json={"names": names})
    assert refused.status_code == 401
    bad = dup_client.post("/duplicates/not-duplicates", json={"names": names[:1]}, headers=auth())
    assert bad.status_code == 400
    for undo in ({}, "false", 0):  # only a JSON boolean says which (schemathesis sent an object)
        odd = {"names": names, "undo": undo}
        assert (
            dup_client.post("/duplicates/not-duplicates", json=odd, headers=auth()).status_code
            == 400
        )
    marked = dup_client.post("/duplicates/not-duplicates", json={"names": names}, headers=auth())
    assert marked.status_code == 200 and marked.get_json()["dismissed"] == len(names) - 1
    after = groups(dup_client)
    assert set(names) not in member_sets(after) and len(after["groups"]) == 3
    assert "dismissed" not in after
    # Remembered in the workdir: a new server process never shows the pair again.
    assert (dup_workdir / "not_duplicates.json").is_file()
    fresh = Searcher.from_workdir(dup_workdir)
    report = StoreFinder().find(fresh.store, HASH, load_dismissed(dup_workdir))
    assert set(names) not in member_sets(report.to_dict())
    undo = {"names": names, "undo": True}
    assert (
        dup_client.post("/duplicates/not-duplicates", json=undo, headers=auth()).status_code == 200
    )
    assert set(names) in member_sets(groups(dup_client))
    assert contents(data) == before  # nothing moved
