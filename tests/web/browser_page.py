"""The browser tests' Chromium (Debian's, under Playwright) and their guarded pages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A browser test module's `pytestmark`: selectable with -m browser, skipped without Chromium.
BROWSER_TEST = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


def playwright_api() -> Any:
    """playwright.sync_api; where Playwright is not installed, the calling test is skipped.

    Imported on demand, so the web tests that need no browser never need Playwright.
    Waits go through its expect(): wait_for_function would need 'unsafe-eval', which our CSP
    forbids.
    """
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def guard(page: Any, base: str, problems: list[str]) -> None:
    """Record in `problems` what goes wrong in `page`: script and console errors, dialogs
    (dismissed), and requests to anywhere but `base` (refused: the page must work offline)."""
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}") or d.dismiss())

    def only_local(route: Any) -> None:
        if route.request.url.startswith((base, "blob:", "data:")):
            route.continue_()
        else:
            problems.append(f"request to another origin: {route.request.url}")
            route.abort()

    page.route("**/*", only_local)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, one per test module (starting it takes about a second)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with playwright_api().sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def problems() -> list[str]:
    """What went wrong in the test's guarded pages: script errors, dialogs, other origins."""
    return []


@pytest.fixture
def guarded_page(browser: Any, problems: list[str]) -> Iterator[Callable[..., Any]]:
    """guarded_page(base, path="/", **context options) → that page of the app served at `base`,
    in a new browser context, guarded (what goes wrong lands in `problems`)."""
    contexts = []

    def open_(base: str, path: str = "/", **options: Any) -> Any:
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        guard(page, base, problems)
        page.goto(base + path)
        return page

    yield open_
    for context in contexts:
        context.close()


def results_shown(page: Any) -> list[dict[str, Any]]:
    """The grid's cards once their images have loaded: texts and the image's natural width."""
    expect = playwright_api().expect
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
