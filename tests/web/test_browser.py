"""The search page in Debian's Chromium, driven by Playwright, against a live local server."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from imgsim.search import Searcher

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
# Waits go through expect(): wait_for_function would need 'unsafe-eval', which our CSP forbids.
expect = sync_api.expect
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def serve_app() -> Iterator[Callable[[Flask], str]]:
    """Start an app on a free loopback port in a thread; returns its base URL."""
    servers = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def problems() -> list[str]:
    """What went wrong in the page: script errors, dialogs, requests to other origins."""
    return []


@pytest.fixture
def page(
    browser: Any, serve_app: Callable[[Flask], str], make_app, problems: list[str]
) -> Iterator[Any]:
    """The search page on a live app, recording anything that goes wrong in `problems`."""
    base = serve_app(make_app())
    context = browser.new_context()
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}") or d.dismiss())

    def only_local(route: Any) -> None:
        # The page must work offline: anything not from our server is a failure.
        if route.request.url.startswith((base, "blob:", "data:")):
            route.continue_()
        else:
            problems.append(f"request to another origin: {route.request.url}")
            route.abort()

    page.route("**/*", only_local)
    page.goto(base + "/")
    yield page
    context.close()


def results_shown(page: Any) -> list[dict[str, Any]]:
    """The grid's cards once their images have loaded: texts and the image's natural width."""
    images = page.locator("#results .result img")
    expect(images.first).to_be_visible()
    for i in range(images.count()):
        expect(images.nth(i)).to_have_js_property("complete", True)
    return page.eval_on_selector_all(
        "#results .result",
        """cards => cards.map(c => ({
            similarity: c.querySelector('.similarity').textContent,
            category: c.querySelector('.category').textContent,
            filename: c.querySelector('.filename').textContent,
            width: c.querySelector('img').naturalWidth,
        }))""",
    )


def test_upload_shows_a_grid_of_images_with_percentages(
    page: Any, problems: list[str], data_dir: Path
) -> None:
    page.set_input_files("#file", str(data_dir / "red_002.png"))
    cards = results_shown(page)
    assert len(cards) == 10
    assert cards[0]["filename"] == "red_002.png"
    assert cards[0]["category"] == "red"
    for card in cards:
        assert re.fullmatch(r"\d{1,3}\.\d%", card["similarity"])
        assert 0 <= float(card["similarity"].rstrip("%")) <= 100
        assert card["width"] > 0, card["filename"]  # the thumbnail really loaded
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#query-name")).to_have_text("red_002.png")
    expect(page.locator("#loading")).to_be_hidden()
    expect(page.locator("#summary")).to_contain_text("10 similar images")
    expect(page.locator("#stats")).to_contain_text("11 images")
    assert problems == []


def test_fewer_results_and_a_threshold(page: Any, problems: list[str], data_dir: Path) -> None:
    page.fill("#top-k", "5")
    page.press("#top-k", "Enter")
    page.set_input_files("#file", str(data_dir / "blue_001.jpg"))
    assert len(results_shown(page)) == 5
    page.fill("#threshold", "100")  # the query's own image and any of (rounded) identical score
    expect(page.locator("#threshold-value")).to_have_text("100%")
    expect(page.locator("#summary")).not_to_contain_text("5 similar images")
    assert page.locator("#results .result").count() < 5
    assert problems == []


def test_the_page_says_what_the_threshold_hid_and_shows_it_on_click(
    page: Any, problems: list[str], data_dir: Path
) -> None:
    page.set_input_files("#file", str(data_dir / "blue_001.jpg"))
    assert len(results_shown(page)) == 10
    page.fill("#threshold", "100")
    expect(page.locator("#summary")).to_contain_text("less similar hidden (under 100%)")
    show = page.locator("#show-hidden")
    expect(show).to_be_visible()
    show.click()
    expect(page.locator("#threshold")).to_have_value("0")
    expect(page.locator("#summary")).to_contain_text("10 similar images")
    expect(show).to_be_hidden()
    assert problems == []


def test_result_cards_load_thumbnails_never_originals(
    page: Any, problems: list[str], data_dir: Path
) -> None:
    loaded: list[str] = []
    page.on("request", lambda r: "/images/" in r.url and loaded.append(r.url))
    page.set_input_files("#file", str(data_dir / "red_002.png"))
    cards = results_shown(page)
    assert len(cards) == 10 and len(loaded) >= 10
    assert all(url.endswith("?size=320") for url in loaded), loaded  # never an original
    original = page.locator("#results .original").first
    assert original.get_attribute("href").endswith("/images/red_002.png")  # on request only
    assert problems == []


def test_clicking_a_result_searches_with_it(page: Any, problems: list[str], data_dir: Path) -> None:
    odd = "blue_<img src=x onerror=alert(1)>_004.png"
    page.set_input_files("#file", str(data_dir / "blue_001.jpg"))
    results_shown(page)
    page.locator("#results .result").filter(has_text=odd).click()
    expect(page.locator("#query-name")).to_have_text(odd)
    expect(page.locator("#results .filename").first).to_have_text(odd)
    assert results_shown(page)[0]["filename"] == odd
    expect(page.locator("#summary")).to_be_focused()
    assert problems == []  # the name stayed text: no alert dialog, no broken image


def test_keyboard_only(page: Any, problems: list[str], data_dir: Path) -> None:
    for _ in range(10):  # past the views' links at the top: the first stop of the form
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file":
            break
    expect(page.locator("#file")).to_be_focused()  # the first stop after the links
    page.set_input_files("#file", str(data_dir / "green_001.jpg"))
    results_shown(page)
    second = page.locator("#results .result").nth(1)
    name = second.locator(".filename").text_content()
    second.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#query-name")).to_have_text(name)
    assert problems == []


def test_paste_and_drop(page: Any, problems: list[str], data_dir: Path) -> None:
    data = list((data_dir / "green_002.png").read_bytes())
    send = """([kind, bytes]) => {
        const file = new File([new Uint8Array(bytes)], 'clip.png', {type: 'image/png'});
        const dt = new DataTransfer();
        dt.items.add(file);
        if (kind === 'paste') {
            document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt}));
        } else {
            const zone = document.getElementById('dropzone');
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
        }
    }"""
    page.evaluate(send, ["paste", data])
    assert results_shown(page)[0]["filename"] == "green_002.png"
    page.evaluate("document.getElementById('results').replaceChildren()")
    page.evaluate(send, ["drop", data])
    assert results_shown(page)[0]["filename"] == "green_002.png"
    assert problems == []


def test_errors_are_shown_clearly(page: Any, problems: list[str], tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    page.set_input_files("#file", str(corrupt))
    expect(page.locator("#error")).to_contain_text("not a readable image")
    expect(page.locator("#results .result")).to_have_count(0)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    page.set_input_files("#file", str(text))
    expect(page.locator("#error")).to_have_text("notes.txt is not an image.")
    # The browser logs the expected 400 as a console error; nothing else may go wrong.
    assert [p for p in problems if "400" not in p] == []


def test_slider_starts_at_the_models_threshold(
    browser: Any, serve_app: Callable[[Flask], str], make_app, searcher: Searcher
) -> None:
    tuned = Searcher(searcher.model, searcher.store, {"threshold": 40.0})
    page = browser.new_page()
    page.goto(serve_app(make_app(tuned)) + "/")
    expect(page.locator("#threshold")).to_have_value("40")
    expect(page.locator("#threshold-value")).to_have_text("40%")
    page.close()


def test_not_ready_server_says_so(
    browser: Any, serve_app: Callable[[Flask], str], make_app, tmp_path: Path, data_dir: Path
) -> None:
    page = browser.new_page()
    page.goto(serve_app(make_app(fresh=True, workdir=str(tmp_path))) + "/")
    expect(page.locator("#stats.warn")).to_contain_text("Model not loaded")
    page.set_input_files("#file", str(data_dir / "red_001.jpg"))
    expect(page.locator("#error")).to_contain_text("Model not loaded — run training first")
    page.close()


def test_too_large_image_is_refused_before_upload(
    browser: Any, serve_app: Callable[[Flask], str], make_app, data_dir: Path
) -> None:
    page = browser.new_page()
    page.goto(serve_app(make_app(max_image_bytes=100)) + "/")
    searches: list[str] = []
    page.on("request", lambda r: r.url.endswith("/search") and searches.append(r.url))
    page.set_input_files("#file", str(data_dir / "red_001.jpg"))
    expect(page.locator("#error")).to_have_text("Image too large: the limit is 100 bytes.")
    assert searches == []
    page.close()
