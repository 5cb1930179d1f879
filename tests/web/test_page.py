"""GET /: the page's HTML, its security headers, and that it needs nothing from another origin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from imgsim.core.config import PAGE_WATCH_REFRESH_SECONDS
from imgsim.web.app import CSP


def test_page_is_served_with_a_strict_csp(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CSP
    assert "default-src 'self'" in CSP and "img-src 'self' blob: data:" in CSP
    assert "unsafe-inline" not in CSP


def test_page_has_the_controls(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    for needed in [
        'id="dropzone"',
        'type="file"',
        'accept="image/*,.heic,.heif,.avif"',  # file pickers often know no HEIC/AVIF type
        'id="preview"',
        'id="top-k"',
        'min="5" max="50"',
        'id="threshold"',
        'type="range"',
        'id="loading"',
        'id="error"',
        'id="results"',
        'data-search-url="/search"',
        'data-stats-url="/stats"',
        'data-health-url="/health"',  # the folder watcher's line (watch.js)
        'id="watch"',
        'data-max-bytes="10485760"',
    ]:
        assert needed in html, needed


# Every page (its address → the nav link marked as the current view, the page's own script).
PAGES = {
    "/": ("Search", "search.js"),
    "/collection": ("Browse", "browse.js"),
    "/duplicates/view": ("Duplicates", "duplicates.js"),
    "/map": ("Map", "map.js"),
}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_the_shared_head_and_nav(client: FlaskClient, path: str) -> None:
    html = client.get(path).get_data(as_text=True)
    view, script = PAGES[path]
    scripts = re.findall(r'<script src="/static/([\w.]+)" defer></script>', html)
    assert scripts[:2] == ["results.js", script]  # the shared module before the page's own
    styles = re.findall(r'<link rel="stylesheet" href="/static/([\w.]+)">', html)
    assert styles[0] == "search.css"
    assert html.count("<title>") == 1 and html.count('<nav class="nav"') == 1
    assert re.findall(r'aria-current="page">(\w+)</a>', html) == [view]
    assert '<link rel="icon" href="data:,">' in html  # the browser asks for no favicon


@pytest.mark.parametrize("path", PAGES)
def test_page_has_no_inline_script_or_style(client: FlaskClient, path: str) -> None:
    html = client.get(path).get_data(as_text=True)
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers


def test_page_and_assets_name_no_other_origin(client: FlaskClient) -> None:
    for path in ["/", "/static/search.js", "/static/watch.js", "/static/search.css"]:
        response = client.get(path)
        assert response.status_code == 200, path
        text = response.get_data(as_text=True)
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path


@pytest.mark.parametrize("script", ["results.js", "search.js", "watch.js", "browse.js", "map.js"])
def test_script_never_writes_html(client: FlaskClient, script: str) -> None:
    text = client.get(f"/static/{script}").get_data(as_text=True)
    for risky in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]:
        assert risky not in text


@pytest.mark.parametrize("script", ["search.js", "browse.js", "map.js"])
def test_pages_fetch_through_the_shared_module(client: FlaskClient, script: str) -> None:
    # Aborting, reading the JSON error and the "cannot be reached" message live in results.js.
    text = client.get(f"/static/{script}").get_data(as_text=True)
    for own in ["AbortController", "response.ok", "data.error", "TypeError", "errorBox.hidden"]:
        assert own not in text, own


def test_the_watcher_line_refreshes_as_often_as_documented(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    assert f'data-watch-refresh-ms="{int(PAGE_WATCH_REFRESH_SECONDS * 1000)}"' in html
    doc = (Path(__file__).resolve().parents[2] / "docs" / "watching.md").read_text()
    assert f"every {PAGE_WATCH_REFRESH_SECONDS:g} s (`PAGE_WATCH_REFRESH_SECONDS`" in doc
