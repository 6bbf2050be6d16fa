"""Keyboard-only flows: the main tasks done with Tab, Shift+Tab, Enter, Space and the arrow keys.

No mouse clicks, and text is typed only into the field the keyboard reached. Every control a
flow tabs through must show where the focus is (an outline or a box-shadow). One app (the
authorisation matrix's world plus a timed quiz) and one browser serve the whole module; the
phone viewport of the axe walk (360 px).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from .browser_support import (
    PHONE,
    LiveServer,
    build_synced_app,
    dispose,
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
  const dateField = /^(date|time|datetime-local|month|week)$/.test(el.type || '');
  if (dateField && !el.matches(':focus')) {
    // Tab past a date field's last part stops at its calendar button, inside the browser's own
    // shadow DOM (out of reach of this check); the browser draws its own ring around it.
    return {ring: true, name: 'input#' + el.id + ' (calendar button)'};
  }
  const look = s => [s.outlineStyle, s.outlineWidth, s.outlineColor, s.boxShadow].join(' ');
  const s = getComputedStyle(el);
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
  const shadow = s.boxShadow && s.boxShadow !== 'none';
  // the ring must be the focus's own: not the look the element has anyway (a "current" mark).
  // Not for date fields: focus() would move to their first part, away from where Tab had it.
  const withFocus = look(s);
  let without = '';
  if (!dateField) {
    el.blur();
    without = look(getComputedStyle(el));
    el.focus({preventScroll: true});
  }
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


def date_parts_order(context) -> list[str]:
    """The order of a date field's parts (year, month, day) in this browser's locale, found on a
    scratch page by the keyboard: ArrowUp raises the focused part, ArrowRight moves on."""
    scratch = context.new_page()
    scratch.set_content('<input id="a"><input type="date" id="d" value="2000-01-01">')
    scratch.focus("#a")
    scratch.keyboard.press("Tab")
    order, before = [], "2000-01-01"
    for _ in range(3):
        scratch.keyboard.press("ArrowUp")
        after = scratch.eval_on_selector("#d", "e => e.value")
        changed = [n for n, (x, y) in enumerate(zip(before.split("-"), after.split("-"), strict=True)) if x != y]
        order.append(("year", "month", "day")[changed[0]])
        before = after
        scratch.keyboard.press("ArrowRight")
    scratch.close()
    return order


def type_date(page, iso: str) -> None:
    """Type a date into the focused date field, part by part in the field's own order. A month
    or day of two digits moves on by itself; a year (up to six digits) needs ArrowRight."""
    parts = dict(zip(("year", "month", "day"), iso.split("-"), strict=True))
    order = date_parts_order(page.context)
    for n, part in enumerate(order):
        page.keyboard.type(parts[part])
        if part == "year" and n < len(order) - 1:
            page.keyboard.press("ArrowRight")


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


def test_deputy_checks_in_with_the_session_code_by_keyboard(served, page):
    from kb.plugins.attendance import service

    session_id = served.world["samplers"]["session_id"][0]  # starts in 5 minutes: check-in is open
    login(page, "a1-deputy")
    page.goto("/attendance/")
    tab_to(page, page.get_by_role("link", name="输入签到码").first)
    press_and_wait(page)
    with served.app.app_context():
        code = service.make_code(session_id)  # what the projector shows
    type_into(page, page.get_by_label("签到码"), code)
    tab_to(page, page.get_by_role("button", name="签到", exact=True))
    press_and_wait(page)
    assert "签到成功" in page.locator("main").inner_text()
    with served.app.app_context():
        from kb.extensions import db
        from kb.plugins.attendance.models import Record

        record = db.session.query(Record).filter_by(
            session_id=session_id, user_id=served.world["people"]["deputy"]).one()
        assert record.status == "present" and record.source == "code"


def test_deputy_files_a_claim_for_hours_by_keyboard(served, page):
    login(page, "a1-deputy")
    page.goto("/progress/")
    tab_to(page, page.get_by_role("link", name="申报线下学时"))
    press_and_wait(page)
    type_into(page, page.get_by_label("培训名称"), "县人大代表培训班")
    tab_to(page, page.get_by_label("培训日期"))
    type_date(page, "2026-03-02")
    assert page.get_by_label("培训日期").input_value() == "2026-03-02"
    type_into(page, page.get_by_label("学时"), "3.5")
    type_into(page, page.get_by_label("说明（主办单位、证明材料等）"), "县委党校")
    tab_to(page, page.get_by_role("button", name="提交申报"))
    press_and_wait(page)
    assert "已提交学时申报" in page.locator("main").inner_text()
    with served.app.app_context():
        from datetime import date

        from kb.extensions import db
        from kb.plugins.progress.models import Claim

        claim = db.session.query(Claim).filter_by(title="县人大代表培训班").one()
        assert (claim.user_id, claim.hours, claim.held_on, claim.note) == (
            served.world["people"]["deputy"], 3.5, date(2026, 3, 2), "县委党校")


def test_county_staff_open_the_county_report_and_download_excel_by_keyboard(served, page):
    import openpyxl

    login(page, "a-staff")
    tab_to(page, page.get_by_role("link", name="学习报表", exact=True))
    press_and_wait(page)
    assert page.url.endswith(f"/progress/report/{served.world['county_a']}")
    assert "甲县" in page.locator("h1").inner_text()
    tab_to(page, page.get_by_role("link", name="导出 Excel"))
    with page.expect_download() as info:
        page.keyboard.press("Enter")
    download = info.value
    assert download.suggested_filename.endswith(".xlsx"), download.suggested_filename
    sheet = openpyxl.load_workbook(io.BytesIO(Path(download.path()).read_bytes())).active
    cells = {str(c.value) for row in sheet.iter_rows() for c in row if c.value is not None}
    assert {"甲一镇", "甲二镇"} <= cells, cells
