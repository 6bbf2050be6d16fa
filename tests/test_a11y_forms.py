"""Accessibility of the pages that only appear after a form is sent: the import previews of the
roster, of a question bank and of a training class's enrolment, each with good and bad rows (the
error tables are part of what is checked). axe-core in Debian's Chromium, 360 px wide, normal and
large-font mode, signed in as the county staff member of the authorisation test world."""

from __future__ import annotations

import pytest

from .browser_support import (
    PHONE,
    LiveServer,
    build_synced_app,
    dispose,
    require_chromium,
)
from .conftest import make_config
from .test_a11y import require_axe, violations
from .test_authz import build_world, samplers

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("a11y-forms")]

GIFT = """::q1:: 乡镇人民代表大会每届任期几年？ {=五年 ~三年 ~四年}

::q2:: 这道题没有正确答案 {~甲 ~乙}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_chromium()
    require_axe()
    app = build_synced_app(make_config(tmp_path_factory.mktemp("a11y-forms")))
    world = build_world(app)
    with LiveServer(app) as server:
        server.world = world
        yield server
    dispose(app)


@pytest.fixture(scope="module")
def staff_page(served, browser):
    context = browser.new_context(**PHONE, bypass_csp=True)
    answer = context.request.post(served.url + "/login", form={"login": "a-staff", "password": "pw"},
                                  max_redirects=0)
    assert answer.status == 302
    yield context.new_page(), context
    context.close()


def _check(page, what: str) -> list[str]:
    """axe on the page as it is, then on the same document in large-font mode (the class the
    font cookie sets; the previews answer a POST, so they cannot simply be loaded again)."""
    problems = [f"{what}: {v}" for v in violations(page)]
    page.evaluate("document.documentElement.classList.add('font-large')")
    problems += [f"{what} large-font: {v}" for v in violations(page)]
    return problems


def _upload(page, served, path: str, name: str, body: bytes, mime: str, fill=None):
    page.goto(served.url + path)
    page.set_input_files("input[type=file]", files=[{"name": name, "mimeType": mime, "buffer": body}])
    for selector, value in (fill or {}).items():
        page.fill(selector, value)
    with page.expect_navigation():
        page.locator("form:has(input[type=file]) [type=submit]").first.click()


def test_import_previews_pass_axe(served, staff_page):
    page, context = staff_page
    problems = []

    template = context.request.get(served.url + "/admin/users/template.csv")
    assert template.status == 200
    roster = template.body() + "无名氏,123,不存在的镇,代表,,男,汉族\r\n".encode()
    _upload(page, served, "/admin/users/import", "花名册.csv", roster, "text/csv")
    assert "/admin/users/import/" in page.url and page.locator("table").count() >= 1, page.url
    problems += _check(page, "roster import preview")

    _upload(page, served, "/quizzes/admin/import", "题库.gift", GIFT.encode(), "text/plain",
            fill={"#slug": "a11y-bank"})
    assert page.locator("input[name=token]").count() == 1, page.url  # the preview, to confirm
    problems += _check(page, "question import preview")

    class_id = samplers(served.world)["class_id"][0]
    page.goto(served.url + f"/attendance/classes/{class_id}/enrol")
    form = page.locator(f"form[action$='/classes/{class_id}/import']")
    if form.count():  # the enrolment import form on the class page
        form.locator("input[type=file]").set_input_files(
            files=[{"name": "名单.csv", "mimeType": "text/csv",
                    "buffer": "姓名,代表证号\r\n查无此人,X-0\r\n".encode()}])
        with page.expect_navigation():
            form.locator("[type=submit]").first.click()
        assert page.locator("table").count() >= 1, page.url
        problems += _check(page, "enrolment import preview")
    else:
        pytest.fail(f"no enrolment import form on /attendance/classes/{class_id}/enrol")

    assert not problems, "\n".join(problems)
