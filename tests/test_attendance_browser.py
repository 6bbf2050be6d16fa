"""Browser test: projector QR, a deputy checks in from a second context, the live page updates."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from .browser_support import (
    PHONE,
    LiveServer,
    build_synced_app,
    dispose,
)
from .conftest import make_config

pytestmark = pytest.mark.browser

TIMEOUT_MS = 8_000
BUDGET_S = 25



def _world(app):
    from kb.extensions import db
    from kb.models import OrgUnit, User, utcnow
    from kb.plugins.attendance.models import Enrolment, TrainingClass, TrainingSession

    with app.app_context():
        county = OrgUnit(kind="county", name="青山县", path="/")
        db.session.add(county)
        db.session.flush()
        county.path = f"/{county.id}/"
        town = OrgUnit(kind="township", name="东镇", parent=county, path="/")
        db.session.add(town)
        db.session.flush()
        town.path = f"{county.path}{town.id}/"
        staff = User(username="staff", name="县工作人员", role="county_staff", org_unit=county)
        deputy = User(username="d1", name="张代表", role="deputy", org_unit=town)
        for u in (staff, deputy):
            u.set_password("pw")
            db.session.add(u)
        klass = TrainingClass(title="履职培训班", org_unit_id=county.id)
        db.session.add(klass)
        db.session.flush()
        start = utcnow() - timedelta(minutes=1)
        session = TrainingSession(class_id=klass.id, starts_at=start, ends_at=start + timedelta(hours=2),
                                  place="党校", hours=2)
        db.session.add(session)
        db.session.flush()
        db.session.add(Enrolment(class_id=klass.id, user_id=deputy.id))
        db.session.commit()
        return session.id


def _login(page, username):
    page.locator("input[name=login]").fill(username)
    page.locator("input[name=password]").fill("pw")
    with page.expect_navigation():
        page.locator("main form button[type=submit]").click()


def test_projector_qr_phone_check_in_and_live_page(browser, tmp_path):
    app = build_synced_app(make_config(tmp_path, WTF_CSRF_ENABLED=True))
    session_id = _world(app)
    errors = []
    started = time.monotonic()
    with LiveServer(app) as server:
        organiser = browser.new_context(base_url=server.url, locale="zh-CN")
        organiser.set_default_timeout(TIMEOUT_MS)
        desk = organiser.new_page()
        desk.on("pageerror", lambda exc: errors.append(str(exc)))
        desk.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        desk.goto(f"/attendance/sessions/{session_id}/projector")
        _login(desk, "staff")
        assert desk.url.endswith(f"/attendance/sessions/{session_id}/projector")
        assert desk.locator("#att-qr svg").is_visible()
        assert desk.locator("#att-code").inner_text().strip().isdigit()
        link = desk.locator("#att-qr").get_attribute("data-url")
        assert f"/attendance/c/{session_id}?t=" in link

        live = organiser.new_page()
        live.on("pageerror", lambda exc: errors.append(str(exc)))
        live.goto(f"/attendance/sessions/{session_id}/live")
        assert live.locator("#att-live-count").inner_text() == "0"
        assert "张代表" in live.locator("#att-missing").inner_text()

        phone_ctx = browser.new_context(base_url=server.url, **PHONE)
        phone_ctx.set_default_timeout(TIMEOUT_MS)
        phone = phone_ctx.new_page()
        phone.on("pageerror", lambda exc: errors.append(str(exc)))
        phone.goto(link)  # what the camera opens
        assert "/login" in phone.url
        _login(phone, "d1")
        assert f"/attendance/c/{session_id}" in phone.url
        with phone.expect_navigation():
            phone.get_by_role("button", name="确认签到").click()
        assert "签到成功" in phone.locator("main").inner_text()

        # The live page polls and shows them in without a reload.
        live.wait_for_function(
            "() => document.getElementById('att-present').textContent.includes('张代表')")
        assert live.locator("#att-live-count").inner_text() == "1"
        assert "张代表" not in live.locator("#att-missing").inner_text()
        phone_ctx.close()
        organiser.close()
    dispose(app)
    assert not errors, f"JavaScript or CSP errors in the browser: {errors}"
    assert time.monotonic() - started < BUDGET_S
