"""The category picker, "more like this" by name, and the browse page, in Debian's Chromium."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from browser_page import BROWSER_TEST, playwright_api, results_shown

expect = playwright_api().expect
pytestmark = BROWSER_TEST
PHONE = {"width": 375, "height": 740}


@pytest.fixture
def open_page(guarded_page: Callable[..., Any], live_server, make_app) -> Callable[..., Any]:
    """open_page(path, viewport=None) → a guarded page of a live app (problems: `problems`)."""
    base = live_server(make_app())

    def open_(path: str, viewport: dict[str, int] | None = None) -> Any:
        return guarded_page(base, path, **({"viewport": viewport} if viewport else {}))

    return open_


def grid_names(page: Any) -> list[str]:
    expect(page.locator("#grid")).not_to_have_attribute("aria-busy", "true")
    return page.locator("#grid .filename").all_text_contents()


def no_horizontal_overflow(page: Any) -> None:
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths


def test_search_in_a_category(open_page, problems: list[str], data_dir: Path) -> None:
    page = open_page("/")
    picker = page.locator("#category")
    expect(picker.locator("option")).to_have_count(6)  # all, and five categories
    expect(picker.locator("option[value='red']")).to_have_text("red (3)")
    picker.select_option("red")
    page.set_input_files("#file", str(data_dir / "blue_001.jpg"))
    cards = results_shown(page)
    assert [c["category"] for c in cards] == ["red"] * 3
    expect(page.locator("#summary")).to_contain_text("3 similar images in red")
    picker.focus()  # the keyboard changes it too, and the search follows
    page.keyboard.press("Home")
    expect(picker).to_have_value("")
    expect(page.locator("#summary")).to_contain_text("10 similar images")
    assert problems == []


def test_more_like_this_from_the_address(open_page, problems: list[str]) -> None:
    page = open_page("/?similar=green_002.png")
    cards = results_shown(page)
    assert cards[0]["filename"] == "green_002.png" and cards[0]["similarity"] == "100.0%"
    expect(page.locator("#query-name")).to_have_text("green_002.png")
    expect(page.locator("#preview")).to_have_js_property("complete", True)
    assert page.eval_on_selector("#preview", "img => img.naturalWidth") > 0
    page.locator("#category").select_option("blue")
    expect(page.locator("#summary")).to_contain_text("in blue")
    assert {c["category"] for c in results_shown(page)} == {"blue"}
    assert problems == []


def test_browse_pages_and_filters(open_page, problems: list[str]) -> None:
    page = open_page("/collection?per_page=4")
    expect(page.locator("#page-info")).to_have_text("Page 1 of 3")
    first = grid_names(page)
    assert len(first) == 4 and first == sorted(first)
    expect(page.locator("#counts")).to_have_text("11 images · 5 categories")
    expect(page.locator("#prev")).to_be_disabled()
    page.locator("#next").click()
    expect(page.locator("#page-info")).to_have_text("Page 2 of 3")
    second = grid_names(page)
    assert len(second) == 4 and second[0] > first[-1]
    assert parse_qs(urlparse(page.url).query)["page"] == ["2"]
    expect(page.locator("#browse-summary")).to_be_focused()
    page.go_back()  # the address keeps the place
    expect(page.locator("#page-info")).to_have_text("Page 1 of 3")
    page.locator("#browse-category").select_option("green")
    expect(page.locator("#page-info")).to_have_text("Page 1 of 1")
    assert grid_names(page) == ["green_001.jpg", "green_002.png", "green_003.jpg"]
    expect(page.locator("#browse-category option[value='green']")).to_have_text("green (3)")
    expect(page.locator("#browse-summary")).to_contain_text("Images 1–3 of 3 in green")
    expect(page.locator("#next")).to_be_disabled()
    for i in range(3):  # the thumbnails really loaded
        expect(page.locator("#grid img").nth(i)).to_have_js_property("complete", True)
    assert min(page.eval_on_selector_all("#grid img", "i => i.map(x => x.naturalWidth)")) > 0
    assert problems == []


def test_more_like_this_from_the_grid_with_the_keyboard(
    open_page,
    problems: list[str],
) -> None:
    odd = "blue_<img src=x onerror=alert(1)>_004.png"
    page = open_page("/collection")
    assert odd in grid_names(page)
    link = page.locator("#grid .result").filter(has_text=odd)
    link.focus()
    expect(link).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url("**/?similar=*")
    expect(page.locator("#query-name")).to_have_text(odd)
    assert results_shown(page)[0]["filename"] == odd
    expect(page.locator("#summary")).to_be_focused()
    # Back in the grid, Tab reaches the images one after another.
    page.go_back()
    grid_names(page)
    page.locator("#grid .result").first.focus()
    page.keyboard.press("Tab")
    expect(page.locator("#grid .result").nth(1)).to_be_focused()
    assert problems == []  # the name stayed text: no alert dialog


def test_nav_links_both_ways(open_page, problems: list[str]) -> None:
    page = open_page("/")
    expect(page.locator(".nav a[aria-current='page']")).to_have_text("Search")
    page.locator(".nav a", has_text="Browse").click()
    expect(page.locator(".nav a[aria-current='page']")).to_have_text("Browse")
    expect(page.locator("h1")).to_have_text("Browse the collection")
    assert problems == []


def test_phone_sized_screens_do_not_scroll_sideways(
    open_page,
    problems: list[str],
    data_dir: Path,
) -> None:
    page = open_page("/collection", PHONE)
    assert len(grid_names(page)) == 11
    no_horizontal_overflow(page)
    columns = page.eval_on_selector(
        "#grid", "g => getComputedStyle(g).gridTemplateColumns.split(' ').length"
    )
    assert columns == 2, columns  # auto-fill: two thumbnails across a phone
    search = open_page("/", PHONE)
    search.set_input_files("#file", str(data_dir / "red_001.jpg"))
    expect(search.locator("#results .result")).to_have_count(10)  # below the fold: lazy
    no_horizontal_overflow(search)
    assert problems == []
