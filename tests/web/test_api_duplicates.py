"""GET /duplicates, POST /duplicates/trash and the page: groups, cache, token, the trash."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from imgsim import trash
from imgsim.duplicates import StoreFinder
from imgsim.search import Searcher
from imgsim.web.app import CSP
from tests.duplicate_folder import PLANTED, contents, indexed_workdir, make_planted_folder

TOKEN = "s3cret-token"


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


def test_groups_of_the_index_with_image_urls(dup_client: FlaskClient) -> None:
    response = dup_client.get("/duplicates")
    assert response.status_code == 200
    body = response.get_json()
    assert body["images"] == 14 and body["method"] == "hash" and body["extras"] == 4
    assert member_sets(body) == PLANTED
    for group in body["groups"]:
        assert group["members"][0]["keep"] and group["members"][0]["name"] == group["keep"]
        for member in group["members"]:
            assert dup_client.get(member["url"]).status_code == 200


def test_the_answer_is_kept_until_the_index_changes(
    dup_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsim.duplicates import finder

    calls, decoded = [], []
    real = StoreFinder.find
    monkeypatch.setattr(StoreFinder, "find", lambda self, *a: calls.append(1) or real(self, *a))
    real_fingerprints = finder.fingerprint_all
    monkeypatch.setattr(
        finder,
        "fingerprint_all",
        lambda records, *a: decoded.append(len(records)) or real_fingerprints(records, *a),
    )
    first = dup_client.get("/duplicates").get_json()
    assert dup_client.get("/duplicates").get_json()["groups"] == first["groups"]
    assert len(calls) == 1
    dup_client.get("/duplicates?threshold=0")  # other settings: their own answer
    assert len(calls) == 2
    extra = first["groups"][0]["extras"]
    response = dup_client.post("/duplicates/trash", json={"names": extra}, headers=auth())
    assert response.status_code == 200
    after = dup_client.get("/duplicates").get_json()
    assert len(after["groups"]) == 3 and after["images"] == 14 - len(extra)
    assert decoded == [14, 0, 0]  # once; then fingerprints are reused by content


@pytest.mark.parametrize(
    "query", ["method=magic", "threshold=99", "threshold=x", "embedding_threshold=2"]
)
def test_bad_settings_are_400(dup_client: FlaskClient, query: str) -> None:
    response = dup_client.get(f"/duplicates?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_embedding_method_answers_with_similarities(dup_client: FlaskClient) -> None:
    body = dup_client.get("/duplicates?method=both").get_json()
    assert body["method"] == "both"
    assert all(m["similarity"] is not None for g in body["groups"] for m in g["members"])


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_trash_moves_the_extras_into_the_trash_never_unlinks(
    dup_client: FlaskClient, dup_workdir: Path
) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    body = dup_client.get("/duplicates").get_json()
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
    assert dup_client.get("/duplicates").get_json()["groups"] == []


def test_a_keeper_or_unknown_name_changes_nothing(
    dup_client: FlaskClient, dup_workdir: Path
) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    body = dup_client.get("/duplicates").get_json()
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
    extras = dup_client.get("/duplicates").get_json()["groups"][0]["extras"]
    response = dup_client.post("/duplicates/trash", json={"names": extras}, headers=auth("x"))
    assert response.status_code == 401
    assert dup_client.post("/duplicates/trash", json={"names": extras}).status_code == 401
    off = make_app(Searcher.from_workdir(dup_workdir), workdir=str(dup_workdir)).test_client()
    assert off.post("/duplicates/trash", json={"names": extras}).status_code == 403
    assert trash.list_trash(dup_workdir) == []


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
