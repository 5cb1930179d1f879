"""The map page in Debian's Chromium, driven by Playwright, against a live local server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_page import BROWSER_TEST, playwright_api
from conftest import build_workdir

from imgsim.search.searcher import Searcher

expect = playwright_api().expect
pytestmark = BROWSER_TEST
PHONE = {"width": 375, "height": 667}


@pytest.fixture(scope="module")
def map_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workdir(tmp_path_factory.mktemp("imgsim-map-browser"))


@pytest.fixture
def open_map(
    guarded_page: Callable[..., Any], live_server, make_app, map_workdir: Path
) -> Callable[..., Any]:
    """open(**context options) → the map page, drawn, recording what goes wrong in `problems`."""
    searcher = Searcher.from_workdir(map_workdir)
    base = live_server(make_app(searcher, workdir=str(map_workdir), map_method="tsne"))

    def open_(**options: Any) -> Any:
        page = guarded_page(base, "/map", **options)
        # The first visit finds no map yet (202): the page says so and asks again.
        expect(page.locator("#map-status")).to_contain_text("laid out by t-SNE", timeout=30_000)
        page.base = base
        return page

    return open_


def points_on_screen(page: Any) -> list[dict[str, Any]]:
    """The map's points with where their dots are, in page coordinates (as map.js draws)."""
    points = page.request.get(page.base + "/map/points").json()["points"]
    # The canvas reaches below a 720-px viewport, and the mouse only reaches what is on screen:
    # a dot down there took no hover (a flaky test, depending on where t-SNE put the points).
    page.locator("#map-canvas").scroll_into_view_if_needed()
    box = page.locator("#map-canvas").bounding_box()
    pad = float(page.locator("#map-canvas").get_attribute("data-pad"))
    span = box["width"] - 2 * pad
    for p in points:
        p["px"] = box["x"] + pad + p["x"] * span
        p["py"] = box["y"] + pad + (1 - p["y"]) * span
        p["cx"], p["cy"] = p["px"] - box["x"], p["py"] - box["y"]  # on the canvas
    return points


def loneliest(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The point farthest from any other: pointing at it cannot hit a neighbour."""

    return max(points, key=lambda p: _room(p, points))


def _room(p: dict[str, Any], points: list[dict[str, Any]]) -> float:
    """Squared distance in pixels from `p` to the nearest other point."""
    return min((p["px"] - q["px"]) ** 2 + (p["py"] - q["py"]) ** 2 for q in points if q is not p)


def first_result(page: Any) -> str:
    expect(page.locator("#results .result").first).to_be_visible()
    return page.locator("#results .result .filename").first.text_content()


def test_points_are_drawn_in_their_category_colour(
    open_map: Callable[..., Any],
    problems: list[str],
) -> None:
    page = open_map()
    points = points_on_screen(page)
    legend = page.eval_on_selector_all(
        "#map-legend button",
        "bs => bs.map(b => [b.dataset.category, getComputedStyle(b.querySelector('.swatch'))"
        ".backgroundColor, b.getAttribute('aria-pressed')])",
    )
    colours = {category: colour for category, colour, _ in legend}
    assert set(colours) == {p["category"] for p in points} and len(set(colours.values())) == 5
    assert all(pressed == "true" for *_, pressed in legend)
    ratio = page.evaluate("window.devicePixelRatio")
    clear = [p for p in points if _room(p, points) > 8**2]  # no other dot over this one
    assert len({p["category"] for p in clear}) >= 2, points
    palette = {category: _rgb(css) for category, css in colours.items()}
    for p in clear:
        drawn = _pixel(page, p["cx"] * ratio, p["cy"] * ratio)
        assert _nearest(drawn, palette) == p["category"], (drawn, palette, p)
        assert _distance(drawn, palette[p["category"]]) <= PIXEL_TOLERANCE, (drawn, palette, p)
    assert problems == []


# How far a dot's pixel may stray from its legend colour in any channel: the canvas is
# anti-aliased and its colours are rounded (once 255,126,13 for the legend's 255,127,14).
PIXEL_TOLERANCE = 16


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def _nearest(colour: tuple[int, ...], palette: dict[str, tuple[int, ...]]) -> str:
    """The category whose legend colour is closest to `colour`."""
    return min(palette, key=lambda category: _distance(colour, palette[category]))


def _pixel(page: Any, x: float, y: float) -> tuple[int, ...]:
    rgba = page.evaluate(
        "([x, y]) => Array.from(document.getElementById('map-canvas').getContext('2d')"
        ".getImageData(x, y, 1, 1).data)",
        [int(x), int(y)],
    )
    return tuple(rgba[:3])


def _rgb(css: str) -> tuple[int, ...]:
    return tuple(int(v) for v in css[css.index("(") + 1 : css.index(")")].split(","))


def test_hover_shows_the_thumbnail_and_click_searches(
    open_map: Callable[..., Any],
    problems: list[str],
) -> None:
    page = open_map()
    point = loneliest(points_on_screen(page))
    page.mouse.move(point["px"], point["py"])
    tip = page.locator("#map-tip")
    expect(tip).to_be_visible()
    expect(page.locator("#map-tip-name")).to_contain_text(point["filename"])
    thumbnail = page.locator("#map-tip-image")
    expect(thumbnail).to_have_attribute("alt", point["filename"])
    expect(thumbnail).to_have_js_property("complete", True)
    assert thumbnail.evaluate("img => img.naturalWidth") > 0  # the image really loaded
    page.mouse.move(1, 1)
    expect(tip).to_be_hidden()

    page.mouse.click(point["px"], point["py"])
    assert first_result(page) == point["filename"]  # its own image is the nearest
    expect(page.locator("#summary")).to_contain_text(f"similar to {point['filename']}")
    expect(page.locator("#map-point")).to_contain_text(point["filename"])
    assert problems == []


def test_keyboard_walks_the_map_and_searches(
    open_map: Callable[..., Any],
    problems: list[str],
) -> None:
    page = open_map()
    for _ in range(page.locator("nav a").count() + 1):  # the nav links, then the map
        page.keyboard.press("Tab")
    expect(page.locator("#map-canvas")).to_be_focused()
    announced = page.locator("#map-point")
    expect(announced).to_contain_text("Enter searches with it")
    expect(page.locator("#map-tip")).to_be_visible()
    seen = {announced.text_content()}
    for key in ["ArrowRight", "ArrowDown", "ArrowLeft", "ArrowUp", "ArrowRight"]:
        page.keyboard.press(key)
        seen.add(announced.text_content())
    assert len(seen) > 1  # the arrows move between points
    name = announced.text_content().split(" — ")[0]
    page.keyboard.press("Enter")
    assert first_result(page) == name
    expect(page.locator("#map-canvas")).to_be_focused()  # the walk can go on

    # The legend is reachable too, and hides a category.
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    first = page.locator("#map-legend button").first
    expect(first).to_be_focused()
    expect(first).to_have_attribute("aria-pressed", "false")
    assert problems == []


def test_phone_sized_screen_fits_and_taps_search(
    open_map: Callable[..., Any],
    problems: list[str],
) -> None:
    page = open_map(viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]  # no sideways scrolling
    box = page.locator("#map-canvas").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert box["width"] >= 0.8 * PHONE["width"]  # the map uses the screen
    point = loneliest(points_on_screen(page))
    page.touchscreen.tap(point["px"], point["py"])
    assert first_result(page) == point["filename"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert problems == []
