"""Accounts, one-time codes, throttling, password changes, user and organisation admin, audit."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from kb.extensions import db
from kb.models import AuditLog, OrgUnit, User

from .test_authz import _org, _user


@pytest.fixture
def people(app):
    with app.app_context():
        province = _org("province", "测试省")
        county = _org("county", "甲县", province)
        other_county = _org("county", "乙县", province)
        t1 = _org("township", "甲一镇", county)
        t2 = _org("township", "乙一镇", other_county)
        staff = _user("staff", "county_staff", county)
        admin = _user("root", "admin", province)
        dep = _user("dep", "deputy", t1)
        dep.phone = "13800000001"
        far = _user("far", "deputy", t2)
        db.session.commit()
        return {"county": county.id, "t1": t1.id, "t2": t2.id, "staff": staff.id, "admin": admin.id,
                "dep": dep.id, "far": far.id, "other_county": other_county.id}


def client_for(app, username, password="pw"):
    client = app.test_client()
    client.post("/login", data={"login": username, "password": password})
    return client


def test_login_by_phone(app, people):
    client = app.test_client()
    assert client.post("/login", data={"login": "13800000001", "password": "pw"}).status_code == 302


def test_throttle_per_account_with_clear_message(app, people):
    client = app.test_client()
    for _ in range(5):
        client.post("/login", data={"login": "dep", "password": "wrong"})
    response = client.post("/login", data={"login": "dep", "password": "pw"})
    assert response.status_code == 429
    assert "登录失败次数过多，请 15 分钟后再试" in response.get_data(as_text=True)
    # the same for an account that does not exist: no enumeration
    for _ in range(5):
        client.post("/login", data={"login": "ghost", "password": "wrong"})
    assert client.post("/login", data={"login": "ghost", "password": "x"}).status_code == 429


def test_throttle_per_address(app, people):
    client = app.test_client()
    for i in range(30):
        client.post("/login", data={"login": f"nobody{i}", "password": "wrong"})
    assert client.post("/login", data={"login": "dep", "password": "pw"}).status_code == 429
    other = app.test_client()
    response = other.post("/login", data={"login": "dep", "password": "pw"},
                          environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert response.status_code == 302


def test_reset_gives_one_time_code_and_forces_change(app, people):
    staff = client_for(app, "staff")
    page = staff.post(f"/admin/users/{people['dep']}/reset").get_data(as_text=True)
    import re

    code = re.search(r'class="code">([A-Z0-9-]+)<', page).group(1)
    with app.app_context():
        user = db.session.get(User, people["dep"])
        assert user.otp_hash and code not in user.otp_hash  # only a digest is stored
        assert db.session.scalar(select(AuditLog.action).order_by(AuditLog.id.desc())) == "user.reset_password"
    dep = app.test_client()
    response = dep.post("/login", data={"login": "dep", "password": code.lower()})
    assert response.headers["Location"] == "/account/password"
    assert dep.get("/").headers["Location"].startswith("/account/password")  # forced
    bad = dep.post("/account/password", data={"current": code, "new": "short", "confirm": "short"})
    assert "至少 8 位" in bad.get_data(as_text=True) or bad.status_code == 200
    ok = dep.post("/account/password", data={"current": code, "new": "新密码-good-1", "confirm": "新密码-good-1"})
    assert ok.status_code == 302 and dep.get("/").status_code == 200
    with app.app_context():
        user = db.session.get(User, people["dep"])
        assert user.otp_hash is None and not user.must_change_password
        assert user.check_password("新密码-good-1")
    # the code is spent
    assert app.test_client().post("/login", data={"login": "dep", "password": code}).status_code == 200


def test_expired_code_is_refused(app, people):
    from datetime import timedelta

    from kb.models import utcnow

    with app.app_context():
        user = db.session.get(User, people["dep"])
        code = user.issue_one_time_code()
        user.otp_expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert app.test_client().post("/login", data={"login": "dep", "password": code}).status_code == 200


def test_staff_creates_edits_and_deactivates_in_scope(app, people):
    staff = client_for(app, "staff")
    response = staff.post("/admin/users/new", data={
        "name": "新代表", "username": "newdep", "phone": "13900000009", "role": "deputy",
        "org_unit_id": str(people["t1"]), "active": "y"})
    assert "一次性登录码" in response.get_data(as_text=True)
    with app.app_context():
        new = db.session.scalar(select(User).where(User.username == "newdep"))
        assert new.must_change_password and new.org_unit_id == people["t1"]
        new_id = new.id
    # staff cannot place someone in another county, nor make an admin
    bad = staff.post("/admin/users/new", data={"name": "x", "username": "x2", "role": "admin",
                                               "org_unit_id": str(people["t2"])})
    assert bad.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "x2")) is None
    # deactivate: never deleted, cannot sign in
    staff.post(f"/admin/users/{new_id}", data={"name": "新代表", "username": "newdep", "role": "deputy",
                                               "org_unit_id": str(people["t1"])})
    with app.app_context():
        user = db.session.get(User, new_id)
        assert user is not None and user.active is False
        entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.deactivate"))
        assert entry.actor_id == people["staff"] and entry.details["changes"]["active"] == ["True", "False"]
    assert staff.get(f"/admin/users/{people['far']}").status_code == 404


def test_duplicate_phone_is_refused(app, people):
    staff = client_for(app, "staff")
    page = staff.post("/admin/users/new", data={"name": "甲", "username": "dup", "phone": "13800000001",
                                                "role": "deputy", "org_unit_id": str(people["t1"])})
    assert "已被其他账号使用" in page.get_data(as_text=True)


def test_user_list_search_and_filters(app, people):
    staff = client_for(app, "staff")
    page = staff.get("/admin/users?q=dep").get_data(as_text=True)
    assert ">dep</a>" in page and "far" not in page
    assert ">dep</a>" not in staff.get("/admin/users?role=county_staff").get_data(as_text=True)


def test_orgs_create_rename_move_deactivate(app, people):
    admin = client_for(app, "root")
    admin.post("/admin/orgs", data={"name": "新建镇", "kind": "township", "parent_id": str(people["county"])})
    with app.app_context():
        new = db.session.scalar(select(OrgUnit).where(OrgUnit.name == "新建镇"))
        assert new.path.endswith(f"/{people['county']}/{new.id}/")
        new_id = new.id
    admin.post(f"/admin/orgs/{new_id}", data={"name": "改名镇", "parent_id": str(people["other_county"]),
                                             "is_active": ""})
    with app.app_context():
        org = db.session.get(OrgUnit, new_id)
        assert org.name == "改名镇" and org.parent_id == people["other_county"] and not org.is_active
        assert f"/{people['other_county']}/{new_id}/" in org.path
    # a township cannot contain a county
    admin.post("/admin/orgs", data={"name": "怪县", "kind": "county", "parent_id": str(people["t1"])})
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(OrgUnit.name == "怪县")) == 0


def test_staff_manages_only_units_of_their_county(app, people):
    staff = client_for(app, "staff")
    assert staff.get(f"/admin/orgs/{people['t1']}").status_code == 200
    assert staff.get(f"/admin/orgs/{people['t2']}").status_code == 404
    assert staff.get(f"/admin/orgs/{people['county']}").status_code == 404  # their own county
    staff.post("/admin/orgs", data={"name": "越权镇", "kind": "township", "parent_id": str(people["other_county"])})
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(OrgUnit.name == "越权镇")) == 0


def test_audit_log_admin_only(app, people):
    assert client_for(app, "staff").get("/admin/audit").status_code == 403
    admin = client_for(app, "root")
    admin.post(f"/admin/users/{people['dep']}/reset")
    assert "user.reset_password" in admin.get("/admin/audit").get_data(as_text=True)


def test_cli_users_and_orgs_list(app, people, runner):
    users = json.loads(runner.invoke(["users", "list", "--json"]).output)
    dep = next(u for u in users if u["username"] == "dep")
    assert dep == {"username": "dep", "name": "dep", "role": "deputy",
                   "organisation": "测试省/甲县/甲一镇", "active": True}
    orgs = json.loads(runner.invoke(["orgs", "list", "--json"]).output)
    assert {o["path"] for o in orgs} >= {"测试省", "测试省/甲县", "测试省/甲县/甲一镇"}


def test_real_password_hash_is_scrypt(tmp_path):
    from kb import create_app

    from .conftest import make_config

    config = make_config(tmp_path)
    del config["PASSWORD_HASH_METHOD"]
    app = create_app(config)
    with app.app_context():
        user = User(username="x", name="x", role="deputy")
        user.set_password("a-good-password")
        assert user.password_hash.startswith("scrypt:") and user.check_password("a-good-password")


def test_phone_is_stored_normalised(app, people):
    staff = client_for(app, "staff")
    staff.post("/admin/users/new", data={"name": "规范", "username": "norm", "phone": "+86 139-0000-0010",
                                         "role": "deputy", "org_unit_id": str(people["t1"])})
    with app.app_context():
        assert db.session.scalar(select(User.phone).where(User.username == "norm")) == "13900000010"


def test_throttle_uses_the_real_address_behind_a_proxy(tmp_path):
    from kb import create_app, dbmigrate

    from .conftest import make_config

    app = create_app(make_config(tmp_path, PROXIES=1))
    with app.app_context():
        dbmigrate.upgrade(app)
    client = app.test_client()
    for i in range(30):
        client.post("/login", data={"login": f"x{i}", "password": "bad"},
                    headers={"X-Forwarded-For": "203.0.113.7"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    blocked = client.post("/login", data={"login": "y", "password": "bad"},
                          headers={"X-Forwarded-For": "203.0.113.7"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    other = client.post("/login", data={"login": "y", "password": "bad"},
                        headers={"X-Forwarded-For": "198.51.100.9"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert blocked.status_code == 429 and other.status_code == 200


def test_first_sign_in_with_a_code_returns_to_where_the_person_was_going(app, people):
    with app.app_context():
        code = db.session.get(User, people["dep"]).issue_one_time_code()
        db.session.commit()
    client = app.test_client()
    response = client.post("/login?next=/courses/basics", data={"login": "dep", "password": code})
    assert response.headers["Location"] == "/account/password?next=/courses/basics"
    done = client.post("/account/password?next=/courses/basics",
                       data={"current": code, "new": "a-new-password-1", "confirm": "a-new-password-1"})
    assert done.headers["Location"] == "/courses/basics"
