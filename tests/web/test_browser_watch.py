"""The search page's folder-watcher line in Chromium: a photo copied in shows, then is found."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_page import BROWSER_TEST, playwright_api, results_shown
from flask import Flask
from webtest_images import image_bytes, make_image

from imgsim.core.config import SearchConfig
from imgsim.embed.watch import FolderWatcher
from imgsim.web import create_app, pages, watching

expect = playwright_api().expect
pytestmark = BROWSER_TEST
WITHIN_MS = 20_000  # a change reaches the index in ~1 s alone; 2 cores shared with other tests


@pytest.fixture
def watched(
    own_workdir: Path,
    live_server: Callable[[Flask], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, FolderWatcher]]:
    """(URL, watcher): the app as `serve --watch` builds it, over a workdir this test may change.

    A server's claim on the watcher is a thread that never stops, so this test starts the same
    FolderWatcher itself (from the same settings) and can stop it; /health reads both alike.
    """
    monkeypatch.setattr(watching, "start_watching", lambda config: None)
    monkeypatch.setattr(pages, "PAGE_WATCH_REFRESH_SECONDS", 0.3)  # the test need not wait 2 s
    config = SearchConfig(workdir=str(own_workdir), watch=True)
    watcher = FolderWatcher(watching.watch_config(config))
    watcher.start()
    try:
        yield live_server(create_app(config, flask_config={"TESTING": True})), watcher
    finally:
        watcher.stop()


def _copy_slowly(target: Path, blob: bytes, pieces: int = 10, pause: float = 0.25) -> None:
    """Write `blob` as a slow copy does, so the watcher holds it back as pending meanwhile."""
    with open(target, "wb") as out:
        for i in range(pieces):
            out.write(blob[i * len(blob) // pieces : (i + 1) * len(blob) // pieces])
            out.flush()
            time.sleep(pause)


def test_the_page_follows_a_photo_copied_into_the_folder(
    guarded_page: Callable[..., Any],
    watched: tuple[str, FolderWatcher],
    own_workdir: Path,
    problems: list[str],
) -> None:
    base, watcher = watched
    page = guarded_page(base)
    line = page.locator("#watch")
    expect(page.locator("#watch-state")).to_have_text("Following the folder")
    expect(page.locator("#watch-pending")).to_have_text("up to date")
    expect(line).not_to_have_class("watch warn")
    # The start caught up with the one image on disk the index lacked (secret_001.png).
    expect(page.locator("#stats")).to_contain_text("12 images ·")
    before = page.locator("#watch-last").text_content()

    new = own_workdir.parent / "data" / "purple_001.png"
    blob = image_bytes(make_image((150, 40, 190), seed=7))
    writer = threading.Thread(target=_copy_slowly, args=(new, blob))
    writer.start()
    try:
        expect(page.locator("#watch-pending")).to_have_text("1 file waiting", timeout=WITHIN_MS)
    finally:
        writer.join()
    expect(page.locator("#watch-pending")).to_have_text("up to date", timeout=WITHIN_MS)
    expect(page.locator("#watch-last")).not_to_have_text(before, timeout=WITHIN_MS)
    # The counts follow without a reload: the page heard of the change from /health.
    expect(page.locator("#stats")).to_contain_text("13 images ·", timeout=WITHIN_MS)

    page.set_input_files("#file", str(new))
    assert results_shown(page)[0]["filename"] == "purple_001.png"

    watcher.stop()  # the watcher dies: the page says nothing follows the folder any more
    expect(page.locator("#watch-state")).to_contain_text("Not following the folder")
    expect(line).to_have_class("watch warn")
    assert problems == []


def test_no_line_when_nothing_watches(
    guarded_page: Callable[..., Any],
    live_server: Callable[[Flask], str],
    make_app: Callable[..., Flask],
    problems: list[str],
) -> None:
    page = guarded_page(live_server(make_app()))
    expect(page.locator("#stats")).to_contain_text("11 images")
    page.wait_for_timeout(300)  # the first answer from /health has come
    expect(page.locator("#watch")).to_be_hidden()
    assert problems == []
