"""The review walk in Debian's Chromium (Playwright): page through the groups, keep one group's
suggested copy, mark another "not duplicates", undo both; the files on disk agree at each step."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from browser_page import BROWSER_TEST, playwright_api
from test_browser_duplicates import TOKEN, dup_workdir, open_page  # noqa: F401 - fixtures

from imgsim.files import trash
from tests.duplicate_folder import PLANTED, contents

expect = playwright_api().expect
pytestmark = BROWSER_TEST
WAIT = 30_000  # ms: after a change the server finds the groups again in the background


def page_groups(page: Any) -> list[set[str]]:
    """The groups shown now, each the set of its images' names, in the page's order."""
    expect(page.locator("#groups .group").first).to_be_visible(timeout=WAIT)
    names = page.eval_on_selector_all(
        "#groups .group",
        "gs => gs.map(g => [...g.querySelectorAll('.member .name')].map(n => n.textContent))",
    )
    return [set(n) for n in names]


def settled(page: Any) -> None:
    """Wait until the page shows the groups the server found after the last change."""
    expect(page.locator("#groups")).to_have_attribute("data-status", "ready", timeout=WAIT)


def to_first_page(page: Any) -> None:
    while not page.locator("#prev-page").is_disabled():
        shown = page.locator("#page-status").text_content()
        page.click("#prev-page")
        expect(page.locator("#page-status")).not_to_have_text(shown)  # one page at a time
    expect(page.locator("#page-status")).to_contain_text("Page 1 of ")


def every_group(page: Any) -> list[set[str]]:
    """Every group, paging forward from the first page with the page's own buttons."""
    settled(page)
    to_first_page(page)
    seen = page_groups(page)
    while not page.locator("#next-page").is_disabled():
        number = page.locator("#groups .group-title").last.text_content()
        page.click("#next-page")
        expect(page.locator("#groups .group-title").last).not_to_have_text(number)
        seen += page_groups(page)
    return seen


def dismissed_pairs(workdir: Path) -> list[list[str]]:
    path = workdir / "not_duplicates.json"
    return json.loads(path.read_text(encoding="utf-8"))["pairs"] if path.exists() else []


def test_page_keep_dismiss_and_undo_both(
    open_page: Callable[..., tuple[Any, list[str]]],  # noqa: F811 - the fixture imported above
    dup_workdir: Path,  # noqa: F811
) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    page, problems = open_page()
    page.goto(page.url + "?per_page=2")
    # Two pages of two groups; together every planted group, once.
    settled(page)
    expect(page.locator("#page-status")).to_have_text("Page 1 of 2")
    first_page = page_groups(page)
    assert len(first_page) == 2
    page.click("#next-page")
    expect(page.locator("#page-status")).to_have_text("Page 2 of 2")
    expect(page.locator("#groups .group-title").first).to_contain_text("Group 3:")
    second_page = page_groups(page)
    assert sorted(first_page + second_page, key=sorted) == PLANTED
    page.click("#prev-page")
    expect(page.locator("#page-status")).to_have_text("Page 1 of 2")
    assert page_groups(page) == first_page

    # Keep the suggested copy of the first group: its other image goes to the trash.
    page.fill("#token", TOKEN)
    group = page.locator("#groups .group").first
    keeper = group.locator(".member.keep .name").text_content()
    expect(group.locator(".member.keep")).to_contain_text("suggested: ")
    extras = group.locator(".member.extra .name").all_text_contents()
    group.locator(".trash-group").click()
    expect(page.locator("#undo-trash")).to_have_text("Undo: bring back 1 file")
    assert sorted(i.name for i in trash.list_trash(dup_workdir)) == sorted(extras)
    assert contents(data) == {n: h for n, h in before.items() if n not in extras}
    assert (data / keeper).is_file()
    for item in trash.list_trash(dup_workdir):
        assert Path(item.stored).is_file() and item.sha256 == before[item.name]
    expect(page.locator("#summary")).to_contain_text("3 groups of duplicates", timeout=WAIT)
    left = every_group(page)
    assert len(left) == 3 and all(keeper not in g for g in left)

    # Mark another group "not duplicates": remembered, nothing moves.
    to_first_page(page)
    other = page.locator("#groups .group").first
    other_names = set(other.locator(".member .name").all_text_contents())
    other.locator(".not-duplicates").click()
    expect(page.locator("#undo-dismiss")).to_be_visible()
    assert [set(p) for p in dismissed_pairs(dup_workdir)] == [other_names]
    expect(page.locator("#summary")).to_contain_text("2 groups of duplicates", timeout=WAIT)
    assert other_names not in every_group(page)
    assert contents(data) == {n: h for n, h in before.items() if n not in extras}

    # Undo "not duplicates": forgotten; the group is back, still nothing moved.
    page.click("#undo-dismiss")
    expect(page.locator("#undo-dismiss")).to_be_hidden()
    assert dismissed_pairs(dup_workdir) == []
    expect(page.locator("#summary")).to_contain_text("3 groups of duplicates", timeout=WAIT)
    assert other_names in every_group(page)
    assert contents(data) == {n: h for n, h in before.items() if n not in extras}

    # Undo the trash: the file is back with its bytes, in the index, and the trash is empty.
    page.click("#undo-trash")
    expect(page.locator("#undo-trash")).to_be_hidden()
    assert contents(data) == before and trash.list_trash(dup_workdir) == []
    expect(page.locator("#summary")).to_contain_text("4 groups of duplicates", timeout=WAIT)
    assert sorted(every_group(page), key=sorted) == PLANTED
    assert problems == []


def test_choose_another_keeper_then_keep_it(
    open_page: Callable[..., tuple[Any, list[str]]],  # noqa: F811
    dup_workdir: Path,  # noqa: F811
) -> None:
    data = dup_workdir.parent / "data"
    before = contents(data)
    page, problems = open_page()
    page.fill("#token", TOKEN)
    group = page.locator("#groups .group", has_text="copies/resized.png")
    expect(group.locator(".member.keep .name")).to_have_text("pic_002.jpg", timeout=WAIT)
    group.locator(".member.extra img").click()  # a click on the picture chooses it
    expect(group.locator(".member.keep .name")).to_have_text("copies/resized.png")
    expect(group.locator(".member.keep .role")).to_have_text("Keep (your choice)")
    expect(group.locator(".trash-group")).to_be_focused()
    group.locator(".choose-keep").click()  # and back: the suggested one again
    expect(group.locator(".member.keep .name")).to_have_text("pic_002.jpg")
    group.locator(".member.extra .choose-keep").click()
    group.locator(".trash-group").click()
    expect(page.locator("#undo-trash")).to_be_visible()
    assert [i.name for i in trash.list_trash(dup_workdir)] == ["pic_002.jpg"]
    assert (data / "copies/resized.png").is_file() and not (data / "pic_002.jpg").exists()
    page.click("#undo-trash")
    expect(page.locator("#undo-trash")).to_be_hidden()
    assert contents(data) == before and trash.list_trash(dup_workdir) == []
    assert problems == []


def test_newest_pictures_first(
    open_page: Callable[..., tuple[Any, list[str]]],  # noqa: F811
    dup_workdir: Path,  # noqa: F811
) -> None:
    data = dup_workdir.parent / "data"
    newest_first = ["pic_002.jpg", "pic_000.jpg", "pic_003.jpg", "pic_001.jpg"]
    for age, name in enumerate(newest_first):
        for group in PLANTED:
            if name in group:
                for member in group:  # the whole group's dates: its newest picture decides
                    os.utime(data / member, (1.7e9 - 86400 * age, 1.7e9 - 86400 * age))
    page, problems = open_page()
    settled(page)
    page.select_option("#sort", "date")
    expect(page.locator("#groups .group").first).to_contain_text("pic_002.jpg")
    shown = page_groups(page)
    assert [next(n for n in g if n.startswith("pic_")) for g in shown] == newest_first
    day = page.locator("#groups .member .facts").first.text_content()
    assert day.endswith(", 2023-11-14")  # the file's date (no EXIF): 1.7e9 s, in UTC
    assert problems == []
