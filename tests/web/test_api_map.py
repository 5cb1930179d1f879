"""GET /map/points (the collection's 2-D map, computed in the background) and the map page."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import build_workdir
from flask import Flask
from flask.testing import FlaskClient

from imgsim.core.config import MAP_FILE
from imgsim.search.searcher import Searcher
from imgsim.web.map_view import wait_for_map
from imgsim.web.openapi import openapi_spec
from imgsim.web.searcher import editor_of


@pytest.fixture(scope="module")
def map_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir of this module's own: the map file it writes stays out of the others' way."""
    return build_workdir(tmp_path_factory.mktemp("imgsim-map"))


def map_client(make_app: Callable[..., Flask], workdir: Path, **settings: Any) -> FlaskClient:
    searcher = Searcher.from_workdir(workdir)
    settings.setdefault("map_method", "pca")  # instant; t-SNE has its own tests
    return make_app(searcher, workdir=str(workdir), **settings).test_client()


def ready_map(client: FlaskClient) -> dict[str, Any]:
    """The map once computed: the first answer is 202 (or the previous map, `updating`)."""
    first = client.get("/map/points")
    if first.status_code == 202:
        assert first.get_json() == {"status": "computing", "retry_after": 2}
        assert first.headers["Retry-After"] == "2"
    if first.status_code == 202 or first.get_json()["status"] == "updating":
        wait_for_map(client.application, 60)
    response = client.get("/map/points")
    assert response.status_code == 200
    return response.get_json()


def test_map_points_cover_the_collection(make_app, map_workdir: Path) -> None:
    client = map_client(make_app, map_workdir)
    body = ready_map(client)
    stats = client.get("/stats").get_json()
    assert body["status"] == "ready" and body["method"] == "pca"
    assert body["total_images"] == body["shown"] == stats["total_images"] == len(body["points"])
    assert body["categories"] == stats["categories"]
    assert list(body) == openapi_spec()["components"]["schemas"]["Map"]["required"]
    assert "store" not in body  # the server's paths are not the API's business
    for point in body["points"]:
        assert set(point) == {"filename", "category", "x", "y", "url"}
        assert 0 <= point["x"] <= 1 and 0 <= point["y"] <= 1
        assert client.get(point["url"]).status_code == 200
    assert (map_workdir / MAP_FILE).is_file()


def test_map_is_bounded_and_stratified(make_app, map_workdir: Path) -> None:
    body = ready_map(map_client(make_app, map_workdir, map_points=6))
    assert body["shown"] == 6 and body["total_images"] > 6 and body["max_points"] == 6
    # Five categories, two of one image: each still has its point.
    assert len(body["categories"]) == 5
    assert {p["category"] for p in body["points"]} == set(body["categories"])


def test_map_follows_changes_of_the_collection(make_app, own_workdir: Path, data_dir: Path) -> None:
    client = map_client(make_app, own_workdir)
    before = ready_map(client)
    editor_of(client.application).add_images({"red_050.png": data_dir / "red_001.jpg"})
    during = client.get("/map/points").get_json()
    assert during["status"] == "updating" and during["generation"] == before["generation"]
    wait_for_map(client.application, 60)
    after = client.get("/map/points").get_json()
    assert after["status"] == "ready" and after["generation"] > before["generation"]
    assert "red_050.png" in {p["filename"] for p in after["points"]}


def test_map_needs_a_collection(make_app) -> None:
    response = make_app(Searcher(None, None)).test_client().get("/map/points")
    assert response.status_code == 503
    assert "run extraction first" in response.get_json()["error"]


def test_a_failed_map_is_a_json_error(make_app, own_workdir: Path, monkeypatch) -> None:
    def broken(*args: object) -> None:
        raise ValueError("no memory left")

    monkeypatch.setattr("imgsim.explore.collection_map.compute_map", broken)
    client = map_client(make_app, own_workdir)
    assert client.get("/map/points").status_code == 202
    wait_for_map(client.application, 60)
    response = client.get("/map/points")
    assert response.status_code == 500
    assert response.get_json() == {"error": "cannot compute the map: no memory left"}


def test_map_page_has_its_parts_and_no_inline_code(client: FlaskClient) -> None:
    response = client.get("/map")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for needed in [
        'id="map-canvas"',
        'tabindex="0"',
        'id="map-tip"',
        'id="map-legend"',
        'id="results"',
        'data-points-url="/map/points"',
        "data-similar-url=",  # a dot's click searches by its name (no upload of the original)
        'src="/static/map.js"',
        '<a href="/map" aria-current="page">Map</a>',
    ]:
        assert needed in html, needed
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html and " style=" not in html
    assert '<a href="/map">Map</a>' in client.get("/").get_data(as_text=True)


def test_map_assets_name_no_other_origin_and_write_no_html(client: FlaskClient) -> None:
    for path in ["/static/map.js", "/static/map.css"]:
        response = client.get(path)
        assert response.status_code == 200, path
        text = response.get_data(as_text=True)
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path
    script = client.get("/static/map.js").get_data(as_text=True)
    for risky in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]:
        assert risky not in script
