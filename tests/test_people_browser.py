"""Browser test: a county staff member uploads a roster, checks the preview, confirms it."""

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

pytestmark = pytest.mark.browser

ROSTER = "姓名,手机号,乡镇/单位,职务,代表证号\n张建国,13812340001,青山镇,人大代表,QS001\n李秀英,13812340002,青山镇,主席团成员,QS002\n王海燕,13812340003,河口乡,人大代表,HK001\n"


def test_staff_uploads_roster_previews_and_confirms(tmp_path):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    from kb.extensions import db
    from kb.models import OrgUnit, User

    app = build_synced_app(make_config(tmp_path, WTF_CSRF_ENABLED=True))
    with app.app_context():
        county = OrgUnit(kind="county", name="示例县", path="/")
        db.session.add(county)
        db.session.flush()
        county.path = f"/{county.id}/"
        for name in ("青山镇", "河口乡"):
            town = OrgUnit(kind="township", name=name, parent=county, path="/")
            db.session.add(town)
            db.session.flush()
            town.path = f"{county.path}{town.id}/"
        staff = User(username="staff", name="县工作人员", role="county_staff", org_unit=county)
        staff.set_password("pw-staff-1")
        db.session.add(staff)
        db.session.commit()
    roster = tmp_path / "花名册.csv"
    roster.write_bytes(ROSTER.encode("gbk"))  # what Excel in Chinese saves
    try:
        with LiveServer(app) as server, sync_playwright() as pw:
            browser = launch_chromium(pw)
            page = browser.new_context(**PHONE).new_page()
            page.set_default_timeout(8000)
            page.goto(server.url + "/login")
            page.fill("#login", "staff")
            page.fill("#password", "pw-staff-1")
            page.click("button[type=submit]")
            page.goto(server.url + "/admin/users/import")
            page.set_input_files("input[type=file]", str(roster))
            page.click("text=上传并预览")
            expect(page.locator(".summary")).to_contain_text("新增 3 人")
            expect(page.locator("table.data")).to_contain_text("张建国")
            expect(page.locator("table.data")).to_contain_text("河口乡")
            with app.app_context():
                assert db.session.query(User).count() == 1  # nothing written before confirming
            page.click("text=确认导入")
            expect(page.locator("h1")).to_have_text("导入完成")
            expect(page.locator("table.codes")).to_contain_text("13812340002")
            assert page.locator("td.code").count() == 3
            page.click("text=查看人员")
            expect(page.locator("table.data")).to_contain_text("李秀英")
            expect(page.locator("table.data")).to_contain_text("主席团成员")
            browser.close()
        with app.app_context():
            assert db.session.query(User).count() == 4
    finally:
        dispose(app)
