"""Browser test of the progress plugin: a deputy finishes a lesson and sees 学时 on 我的学习."""

from __future__ import annotations

import time

import pytest

from kb.extensions import db
from kb.models import OrgUnit, User

from .browser_support import (
    PHONE,
    LiveServer,
    build_synced_app,
    dispose,
    launch_chromium,
    require_chromium,
)
from .conftest import make_config

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    # A rule easy to meet in a test: no minimum time (the default needs half the lesson's minutes).
    app = build_synced_app(make_config(tmp_path, PROGRESS_COMPLETION='{"time_fraction": 0}'))
    with app.app_context():
        county = OrgUnit(kind="county", name="示例县", path="/")
        db.session.add(county)
        db.session.flush()
        county.path = f"/{county.id}/"
        town = OrgUnit(kind="township", name="青山镇", parent=county, path="/")
        db.session.add(town)
        db.session.flush()
        town.path = f"{county.path}{town.id}/"
        user = User(username="d1", name="代表甲", role="deputy", org_unit=town)
        user.set_password("pw-browser-1")
        db.session.add(user)
        db.session.commit()
    with LiveServer(app) as live:
        yield live
    dispose(app)


def test_deputy_finishes_a_lesson_and_sees_hours(server):
    require_chromium()
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        context = browser.new_context(base_url=server.url, **PHONE)
        context.set_default_timeout(8_000)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        beats = []
        page.on("request", lambda req: beats.append(req) if req.url.endswith("/progress/beat") else None)

        page.goto("/login")
        page.fill("input[name=login]", "d1")
        page.fill("input[name=password]", "pw-browser-1")
        with page.expect_navigation():
            page.locator("main form button[type=submit]").first.click()

        page.goto("/courses/basics/presidium")
        page.wait_for_function("() => performance.getEntriesByType('resource')"
                               ".some(e => e.name.endsWith('/progress/beat'))")
        assert beats and beats[0].headers.get("x-csrftoken")
        with page.expect_navigation():
            page.get_by_role("button", name="学完了").click()
        assert page.locator("#panel-progress").get_by_text("已学完").is_visible()

        page.goto("/progress/")
        total = page.locator("[data-progress-total]").inner_text()
        assert total.startswith("0.25"), total
        assert page.get_by_text("主席团和主席").first.is_visible()
        context.close()
        browser.close()
    assert not errors, errors
    assert time.monotonic() - started < 20
