"""Browser tests: a phone-sized Chromium against a live server with the fixture courses.

Debian's Chromium (``/usr/bin/chromium``) through Playwright; skipped when it is missing, failed
when it is missing under ``CI``. The tests share one app and server (they only read) and each
gets a fresh browser context (its own cookies).
"""

from __future__ import annotations

import time
from urllib.parse import unquote, urlsplit

import pytest

from .browser_support import (
    PHONE,
    LiveServer,
    build_synced_app,
    dispose,
)
from .conftest import make_config

pytestmark = pytest.mark.browser

TIMEOUT_MS = 8_000  # per action; the whole test must stay well under 20 s
BUDGET_S = 20



@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """The fixture courses, synced and indexed, served on 127.0.0.1 (the tests only read)."""
    app = build_synced_app(make_config(tmp_path_factory.mktemp("live")))
    with LiveServer(app) as server:
        yield server
    dispose(app)


@pytest.fixture
def phone(browser, live_server):
    context = browser.new_context(base_url=live_server.url, **PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    started = time.monotonic()
    yield page
    context.close()
    assert not errors, f"JavaScript or CSP errors in the browser: {errors}"
    assert time.monotonic() - started < BUDGET_S, "browser test took too long"


def test_search_hit_opens_highlighted_section_on_screen(phone):
    page = phone
    page.goto("/")
    page.locator("main form[role=search] input[name=q]").fill("主席团")
    with page.expect_navigation():
        page.locator("main form[role=search] input[name=q]").press("Enter")
    assert urlsplit(page.url).path == "/search"

    first = page.locator("ol.hits li.hit a").first
    href = first.get_attribute("href")
    heading_id = unquote(urlsplit(href).fragment)
    assert heading_id == "闭会期间主席团做什么", href
    with page.expect_navigation():
        first.click()
    assert urlsplit(page.url).path == "/courses/basics/presidium"

    h2 = page.locator(f'h2[id="{heading_id}"]')
    page.wait_for_function(
        "id => { const h = document.getElementById(id); return h && h.classList.contains('hit-section'); }",
        arg=heading_id)
    assert "hit-section" in (h2.get_attribute("class") or "").split()

    box = h2.bounding_box()  # relative to the viewport
    assert box is not None
    viewport = page.viewport_size
    assert 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"], (box, viewport)
    assert 0 <= box["x"] and box["x"] + box["width"] <= viewport["width"], (box, viewport)

    assert h2.locator("mark").count() >= 1
    assert h2.locator("mark").first.text_content() == "主席团"
    # The whole section (up to the next H2) is marked, not just its heading.
    assert page.locator(".prose p.hit-section mark").count() >= 1

    # A question typed without spaces still marks its words (split in the browser).
    page.goto("/courses/basics/presidium?hl=主席团闭会期间做什么#闭会期间主席团做什么")
    page.wait_for_function("document.querySelector('h2.hit-section mark') !== null")
    marked = page.locator(".hit-section mark").all_text_contents()
    assert "主席团" in marked and "闭会期间" in marked, marked


def _horizontal_overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_phone_layout_has_no_horizontal_scroll_and_large_font_works(phone):
    page = phone
    for path in ("/", "/courses/basics/presidium"):
        page.goto(path)
        assert page.evaluate("window.innerWidth") == 360
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, path

    page.goto("/courses/basics/presidium")
    assert "font-large" not in (page.locator("html").get_attribute("class") or "")
    with page.expect_navigation():
        page.get_by_role("button", name="大字号").click()
    assert urlsplit(page.url).path == "/courses/basics/presidium"
    assert "font-large" in (page.locator("html").get_attribute("class") or "").split()
    assert page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)") > 17
    assert _horizontal_overflow(page) <= 0
    page.get_by_role("button", name="标准字号").wait_for()

    page.goto("/")  # the preference sticks
    assert "font-large" in (page.locator("html").get_attribute("class") or "").split()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
