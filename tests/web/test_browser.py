"""The search page in Debian's Chromium, driven by Playwright, against a live local server."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_page import BROWSER_TEST, playwright_api, results_shown
from flask import Flask

from imgsim.search.searcher import Searcher

expect = playwright_api().expect
pytestmark = BROWSER_TEST


@pytest.fixture
def page(guarded_page: Callable[..., Any], live_server: Callable[[Flask], str], make_app) -> Any:
    """The search page on a live app, recording anything that goes wrong in `problems`."""
    return guarded_page(live_server(make_app()))


def _wait_for(page: Any, done: Callable[[], bool]) -> None:
    """Let Playwright deliver events (they arrive while it waits) until done() or 5 s pass."""
    for _ in range(50):
        if done():
            return
        page.wait_for_timeout(100)


def test_the_guard_records_what_goes_wrong(page: Any, problems: list[str]) -> None:
    page.evaluate("console.error('boom')")
    page.evaluate("alert('hello')")  # recorded and dismissed
    page.evaluate("setTimeout(() => { throw new Error('late'); })")
    # Navigating away before the timer fires would cancel it (CI saw that race).
    _wait_for(page, lambda: len(problems) == 3)
    assert sorted(problems) == ["console: boom", "dialog: hello", "page error: late"]
    with pytest.raises(playwright_api().Error):  # refused, so navigating there fails
        page.goto("http://elsewhere.invalid/x.png")
    _wait_for(page, lambda: len(problems) > 3)
    # Chromium may ask for a refused navigation more than once; each ask is recorded.
    assert set(problems[3:]) == {"request to another origin: http://elsewhere.invalid/x.png"}


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
    guarded_page: Callable[..., Any], live_server, make_app, searcher: Searcher
) -> None:
    tuned = Searcher(searcher.model, searcher.store, {"threshold": 40.0})
    page = guarded_page(live_server(make_app(tuned)))
    expect(page.locator("#threshold")).to_have_value("40")
    expect(page.locator("#threshold-value")).to_have_text("40%")


def test_not_ready_server_says_so(
    guarded_page: Callable[..., Any], live_server, make_app, tmp_path: Path, data_dir: Path
) -> None:
    page = guarded_page(live_server(make_app(fresh=True, workdir=str(tmp_path))))
    expect(page.locator("#stats.warn")).to_contain_text("Model not loaded")
    page.set_input_files("#file", str(data_dir / "red_001.jpg"))
    expect(page.locator("#error")).to_contain_text("Model not loaded — run training first")


def test_too_large_image_is_refused_before_upload(
    guarded_page: Callable[..., Any], live_server, make_app, data_dir: Path
) -> None:
    page = guarded_page(live_server(make_app(max_image_bytes=100)))
    searches: list[str] = []
    page.on("request", lambda r: r.url.endswith("/search") and searches.append(r.url))
    page.set_input_files("#file", str(data_dir / "red_001.jpg"))
    expect(page.locator("#error")).to_have_text("Image too large: the limit is 100 bytes.")
    assert searches == []
