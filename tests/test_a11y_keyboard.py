"""Keyboard-only flows: the main tasks done with Tab, Shift+Tab, Enter, Space and the arrow keys.

No mouse clicks, and text is typed only into the field the keyboard reached. Every control a
flow tabs through must show where the focus is (an outline or a box-shadow). One app (the
authorisation matrix's world plus a timed quiz) and one browser serve the whole module; the
phone viewport of the axe walk (360 px).
"""

from __future__ import annotations

import pytest

from .browser_support import (
    PHONE,
    LiveServer,
    build_synced_app,
    dispose,
    launch_chromium,
    require_chromium,
)
from .conftest import make_config
from .quizzes_support import QUIZ_YAML
from .test_authz import build_world

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("a11y-keys")]
TIMEOUT_MS = 8_000

# Whether the focused element shows a focus ring (an outline or a box-shadow it has only while
# focused), and a short name of it for failure messages.
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) { return null; }
  const look = s => [s.outlineStyle, s.outlineWidth, s.outlineColor, s.boxShadow].join(' ');
  const s = getComputedStyle(el);
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
  const shadow = s.boxShadow && s.boxShadow !== 'none';
  // the ring must be the focus's own: not the look the element has anyway (a "current" mark)
  const withFocus = look(s);
  el.blur();
  const without = look(getComputedStyle(el));
  el.focus({preventScroll: true});
  const name = (el.getAttribute('aria-label') || el.innerText || el.value || '').trim().slice(0, 20);
  return {ring: Boolean(outline || shadow) && withFocus !== without,
          name: el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                + (el.getAttribute('type') ? '[' + el.getAttribute('type') + ']' : '')
                + (name ? ' "' + name + '"' : '')};
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_chromium()
    root = tmp_path_factory.mktemp("a11y-keys")
    config = make_config(root, WTF_CSRF_ENABLED=True)
    (root / "quizzes" / "basics-quiz.yaml").write_text(QUIZ_YAML, encoding="utf-8")
    app = build_synced_app(config)
    world = build_world(app)
    with LiveServer(app) as server:
        server.world = world
        yield server
    dispose(app)


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


@pytest.fixture
def page(served, browser):
    context = browser.new_context(base_url=served.url, **PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert not errors, f"JavaScript or CSP errors in the browser: {errors}"


def focused(page) -> dict | None:
    return page.evaluate(FOCUSED)


def tab_to(page, target, limit: int = 40, back: bool = False) -> list[str]:
    """Press Tab (Shift+Tab with ``back``) until ``target`` (a locator) has the focus; every
    element the focus stops at on the way must show a focus ring. Returns the stops."""
    key = "Shift+Tab" if back else "Tab"
    seen, unringed = [], []
    for _ in range(limit):
        page.keyboard.press(key)
        now = focused(page)
        if now is None:
            seen.append("(body)")
            continue
        seen.append(now["name"])
        if not now["ring"]:
            unringed.append(now["name"])
        if target.evaluate("el => el === document.activeElement"):
            assert not unringed, f"focus is not visible on: {unringed} (stops: {seen})"
            return seen
    pytest.fail(f"{key} x{limit} never reached {target}; the focus stopped at: {seen}")


def type_into(page, target, text: str) -> None:
    """Tab to a field and type into it (the field is reached by the keyboard, not filled)."""
    tab_to(page, target)
    page.keyboard.type(text)


def login(page, username: str, password: str = "pw") -> None:
    page.goto("/login")
    type_into(page, page.locator("#login"), username)
    type_into(page, page.locator("#password"), password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/login" not in page.url, f"cannot sign in as {username}"


def press_and_wait(page, key: str = "Enter") -> None:
    with page.expect_navigation():
        page.keyboard.press(key)


def test_deputy_takes_a_quiz_by_keyboard(served, page):
    page.on("dialog", lambda d: d.accept())  # the 交卷 confirmation: Enter on OK
    login(page, "a1-deputy")
    page.goto("/quizzes/")
    tab_to(page, page.get_by_role("link", name="基础测验"))
    press_and_wait(page)
    tab_to(page, page.get_by_role("button", name="开始测验"))
    press_and_wait(page)
    assert "/quizzes/attempt/" in page.url

    # 1. single choice: Tab into the radio group, arrow keys pick 五年 (C)
    tab_to(page, page.get_by_role("radio", name="A. 三年"))
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.get_by_role("radio", name="C. 五年").is_checked()
    assert focused(page)["ring"]
    tab_to(page, page.get_by_role("button", name="保存，下一题"))
    press_and_wait(page)
    # 2. multiple choice: Space ticks each checkbox
    tab_to(page, page.get_by_role("checkbox", name="A. 听取专项工作报告"))
    page.keyboard.press("Space")
    tab_to(page, page.get_by_role("checkbox", name="B. 检查法律实施"))
    page.keyboard.press("Space")
    tab_to(page, page.get_by_role("button", name="保存，下一题"))
    press_and_wait(page)
    # 3. true/false
    tab_to(page, page.get_by_role("radio", name="对"))
    page.keyboard.press("ArrowDown")
    assert page.get_by_role("radio", name="错").is_checked()
    tab_to(page, page.get_by_role("button", name="保存，下一题"))
    press_and_wait(page)
    # 4. fill in, and submit (through the question dots)
    type_into(page, page.locator("fieldset.quiz-q input[type=text]"), "3")
    tab_to(page, page.get_by_role("button", name="交卷"))
    press_and_wait(page)
    assert "/result" in page.url
    body = page.locator("main").inner_text()
    assert "100" in body and "通过" in body, body
    # the result page's links are reachable too
    tab_to(page, page.get_by_role("link", name="去错题本"))
