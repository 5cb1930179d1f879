"""The duplicates page in Debian's Chromium (Playwright): groups, trash with the token, keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_page import BROWSER_TEST, playwright_api
from flask import Flask

from imgsim.files import trash
from imgsim.search.searcher import Searcher
from tests.duplicate_folder import PLANTED, indexed_workdir, make_planted_folder

TOKEN = "browser-token"
PHONE = {"width": 375, "height": 667}
expect = playwright_api().expect
pytestmark = BROWSER_TEST


@pytest.fixture
def dup_workdir(tmp_path: Path) -> Path:
    return indexed_workdir(tmp_path, make_planted_folder(tmp_path / "data"))


@pytest.fixture
def open_page(
    guarded_page: Callable[..., Any],
    problems: list[str],
    live_server: Callable[[Flask], str],
    make_app: Callable[..., Flask],
    dup_workdir: Path,
) -> Callable[..., tuple[Any, list[str]]]:
    """Opens the duplicates page (optionally phone-sized); returns it and the test's problems."""
    app = make_app(Searcher.from_workdir(dup_workdir), workdir=str(dup_workdir), admin_token=TOKEN)
    base = live_server(app)

    def open_(viewport: dict[str, int] | None = None) -> tuple[Any, list[str]]:
        options = {"viewport": viewport} if viewport else {}
        return guarded_page(base, "/duplicates/view", **options), problems

    return open_


def shown_groups(page: Any) -> list[set[str]]:
    expect(page.locator("#groups .group").first).to_be_visible()
    names = page.eval_on_selector_all(
        "#groups .group",
        "gs => gs.map(g => [...g.querySelectorAll('.member .name')].map(n => n.textContent))",
    )
    return sorted((set(n) for n in names), key=sorted)


def test_groups_side_by_side_and_trash_with_the_token(
    open_page: Callable[..., tuple[Any, list[str]]], dup_workdir: Path
) -> None:
    page, problems = open_page()
    assert shown_groups(page) == PLANTED
    expect(page.locator("#summary")).to_contain_text("4 groups of duplicates, 4 extra images")
    images = page.locator("#groups .member img")
    for i in range(images.count()):
        expect(images.nth(i)).to_have_js_property("complete", True)
        assert images.nth(i).evaluate("img => img.naturalWidth") > 0
    for group in page.locator("#groups .group").all():  # side by side: one row, not a column
        tops = group.locator(".member").evaluate_all(
            "ms => ms.map(m => Math.round(m.getBoundingClientRect().top))"
        )
        assert len(tops) >= 2 and len(set(tops)) == 1, tops
    expect(page.locator(".trash-group").first).to_be_disabled()  # no token yet
    page.fill("#token", "wrong")
    page.locator(".trash-group").first.click()
    expect(page.locator("#error")).to_contain_text("token was refused")
    assert trash.list_trash(dup_workdir) == []
    page.fill("#token", TOKEN)
    first = page.locator("#groups .group").first
    extra = first.locator(".member.extra .name").first.text_content()
    first.locator(".trash-group").click()
    expect(page.locator("#groups .group")).to_have_count(3)
    expect(page.locator("#summary")).to_contain_text("Moved 1 file to the trash")
    assert [item.name for item in trash.list_trash(dup_workdir)] == [extra]
    data = dup_workdir.parent / "data"
    assert not (data / extra).exists()
    titles = page.eval_on_selector_all("#groups .group-title", "ts => ts.map(t => t.textContent)")
    same = sum(": same picture," in t for t in titles)
    near = sum(": near duplicate," in t for t in titles)
    assert same + near == 3 and near >= 2  # the exact copy is the one same picture
    expect(page.locator("#trash-all")).to_contain_text(f"of the {same} same-picture group")
    page.click("#trash-all")  # the same pictures only: near duplicates are chosen per group
    expect(page.locator("#groups .group")).to_have_count(near)
    expect(page.locator("#summary")).to_contain_text(f"Moved {1 + same} file")
    expect(page.locator("#trash-all")).to_be_disabled()
    for left in range(near, 0, -1):
        expect(page.locator("#groups .group")).to_have_count(left)
        page.locator(".trash-group").first.click()
    expect(page.locator("#summary")).to_contain_text("No duplicates. Moved 4 files")
    assert len(trash.list_trash(dup_workdir)) == 4
    assert all(Path(item.stored).is_file() for item in trash.list_trash(dup_workdir))
    assert len(list(data.rglob("*.*"))) == 10  # the ten originals stay
    # The one refused request is logged by the browser; nothing else went wrong.
    assert [p for p in problems if "status of 401" not in p] == [] and len(problems) == 1


def test_duplicate_cards_load_thumbnails(
    open_page: Callable[..., tuple[Any, list[str]]],
) -> None:
    page, problems = open_page()
    loaded: list[str] = []
    page.on("request", lambda r: "/images/" in r.url and loaded.append(r.url))
    page.reload()
    shown_groups(page)
    images = page.locator("#groups .member img")
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
        expect(images.nth(i)).to_have_js_property("complete", True)
    assert loaded and all(url.endswith("?size=320") for url in loaded), loaded
    assert problems == []


def test_keyboard_only(open_page: Callable[..., tuple[Any, list[str]]], dup_workdir: Path) -> None:
    page, problems = open_page()
    shown_groups(page)
    page.locator("#token").focus()
    page.keyboard.type(TOKEN)
    page.keyboard.press("Tab")  # "Move the extras of the same-picture groups" comes next
    expect(page.locator("#trash-all")).to_be_focused()
    page.keyboard.press("Tab")  # then the first group's button
    expect(page.locator(".trash-group").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#groups .group")).to_have_count(3)
    # The focus moves on to the next group, so the keys go on from there.
    expect(page.locator(".group-title").first).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(".trash-group").first).to_be_focused()
    page.keyboard.press("Space")
    expect(page.locator("#groups .group")).to_have_count(2)
    assert len(trash.list_trash(dup_workdir)) == 2
    assert problems == []


def test_phone_sized_screen(open_page: Callable[..., tuple[Any, list[str]]]) -> None:
    page, problems = open_page(PHONE)
    assert shown_groups(page) == PLANTED
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page scrolls sideways on a phone"
    box = page.locator("#groups .group").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    member = page.locator("#groups .member").first.bounding_box()
    assert member["width"] >= 120  # images stay big enough to compare
    expect(page.locator("#trash-all")).to_be_visible()
    assert problems == []


def test_not_duplicates_then_undo(
    open_page: Callable[..., tuple[Any, list[str]]], dup_workdir: Path
) -> None:
    page, problems = open_page()
    shown_groups(page)
    expect(page.locator(".not-duplicates").first).to_be_disabled()  # no token yet
    page.fill("#token", TOKEN)
    first = page.locator("#groups .group").first
    names = set(first.locator(".member .name").all_text_contents())
    first.locator(".not-duplicates").click()
    expect(page.locator("#groups .group")).to_have_count(3)
    expect(page.locator("#undo-dismiss")).to_be_focused()
    assert names not in shown_groups(page)
    saved = (dup_workdir / "not_duplicates.json").read_text(encoding="utf-8")
    assert all(name in saved for name in names)
    page.click("#undo-dismiss")
    expect(page.locator("#groups .group")).to_have_count(4)
    expect(page.locator("#undo-dismiss")).to_be_hidden()
    assert shown_groups(page) == PLANTED
    assert trash.list_trash(dup_workdir) == [] and problems == []
