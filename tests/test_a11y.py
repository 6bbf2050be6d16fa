"""Accessibility: axe-core (WCAG 2 A/AA) in Debian's Chromium on the core pages, and the keyboard."""

from __future__ import annotations

import os
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

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"

PAGES = ["/", "/courses/basics", "/courses/basics/presidium", "/search?q=主席团", "/search?q=量子纠缠超导体",
         "/login", "/laws", "/courses/nope"]
STAFF_PAGES = ["/admin/users", "/admin/users/import", "/admin/orgs", "/account/password", "/account/data"]


def require_axe():
    if not AXE.exists():
        message = f"axe-core not installed at {AXE} (run `npm ci`; `make test` does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}});
        return r.violations.map(v => v.id + ': ' + v.help + ' — ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")
    return result


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_chromium()
    require_axe()
    from kb.extensions import db
    from kb.models import OrgUnit, User

    app = build_synced_app(make_config(tmp_path_factory.mktemp("a11y")))
    with app.app_context():
        county = OrgUnit(kind="county", name="示例县", path="/")
        db.session.add(county)
        db.session.flush()
        county.path = f"/{county.id}/"
        staff = User(username="staff", name="县工作人员", role="county_staff", org_unit=county)
        staff.set_password("pw")
        db.session.add(staff)
        db.session.commit()
    with LiveServer(app) as server:
        yield server
    dispose(app)



def test_core_pages_pass_axe(served, browser):
    context = browser.new_context(**PHONE, bypass_csp=True)
    page = context.new_page()
    problems = {}
    for path in PAGES:
        page.goto(served.url + path)
        found = violations(page)
        if found:
            problems[path] = found
    page.goto(served.url + "/login")
    page.fill("#login", "staff")
    page.fill("#password", "pw")
    page.click("button[type=submit]")
    for path in STAFF_PAGES:
        page.goto(served.url + path)
        found = violations(page)
        if found:
            problems[path] = found
    # large-font mode keeps contrast and layout rules
    page.goto(served.url + "/courses/basics/presidium")
    page.click("text=大字号")
    found = violations(page)
    if found:
        problems["large font"] = found
    context.close()
    assert not problems, "\n".join(f"{p}: {v}" for p, vs in problems.items() for v in vs)


def test_keyboard_reaches_search_and_content(served, browser):
    page = browser.new_context(**PHONE).new_page()
    page.goto(served.url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    page.goto(served.url + "/")
    page.focus("#q")
    page.keyboard.type("主席团")
    page.keyboard.press("Enter")
    page.wait_for_url("**/search?q=*")
    for _ in range(40):  # tab to the first hit
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('.hit') !== null"):
            break
    else:
        pytest.fail("the first search hit cannot be reached with the keyboard")
    page.keyboard.press("Enter")
    page.wait_for_url("**/courses/**")
