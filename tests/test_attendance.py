"""Attendance plugin: tokens, the check-in window, check-in over HTTP, leave, closing, reports."""

from __future__ import annotations

import io
import re
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

import kb
from kb.extensions import db
from kb.models import User
from kb.plugins.attendance import service
from kb.plugins.attendance.models import (
    Enrolment,
    LeaveRequest,
    MarkLog,
    Record,
    TrainingClass,
    TrainingSession,
)
from kb.records import ReportScope

from .conftest import login
from .conftest import make_org as _org
from .conftest import make_user as _user

# 2026-03-02 09:00 in Asia/Shanghai is 01:00 UTC; on a 15-second slot boundary.
START = datetime(2026, 3, 2, 1, 0, 0)


class Clock:
    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


@pytest.fixture
def clock(monkeypatch):
    c = Clock(START - timedelta(minutes=5))
    monkeypatch.setattr(service, "now", c)
    return c






def make_world(app, sessions=((0, 2),)):
    """A county with two townships; a county class with sessions (offset days, hours) from START."""
    with app.app_context():
        county = _org("county", "青山县")
        t1, t2 = _org("township", "东镇", county), _org("township", "西镇", county)
        ids = {"county": county.id, "t1": t1.id, "t2": t2.id}
        ids["staff"] = _user("staff", "county_staff", county).id
        ids["chair1"] = _user("chair1", "chair", t1).id
        ids["chair2"] = _user("chair2", "chair", t2).id
        ids["d1"] = _user("d1", "deputy", t1, "张一", phone="13800000001").id
        ids["d2"] = _user("d2", "deputy", t1, "张二", phone="13800000002", card="DB-002").id
        ids["d3"] = _user("d3", "deputy", t2, "李三", phone="13800000003").id
        ids["outsider"] = _user("outsider", "deputy", t2, "王外").id
        klass = TrainingClass(title="代表履职培训班", org_unit_id=county.id)
        db.session.add(klass)
        db.session.flush()
        ids["class"] = klass.id
        ids["sessions"] = []
        for days, hours in sessions:
            start = START + timedelta(days=days)
            s = TrainingSession(class_id=klass.id, starts_at=start, ends_at=start + timedelta(hours=hours),
                                place="党校", hours=hours)
            db.session.add(s)
            db.session.flush()
            ids["sessions"].append(s.id)
        ids["session"] = ids["sessions"][0]
        for u in ("d1", "d2", "d3"):
            db.session.add(Enrolment(class_id=klass.id, user_id=ids[u]))
        db.session.commit()
    return ids


@pytest.fixture
def world(app):
    return make_world(app)


def _records(app, session_id):
    with app.app_context():
        return {r.user_id: r.status for r in db.session.scalars(
            select(Record).where(Record.session_id == session_id))}


# -- tokens --------------------------------------------------------------------------------------

def test_token_rotates_and_previous_one_is_accepted_for_a_grace_period(app, clock):
    with app.app_context():
        clock.at = START
        token, code = service.make_token(7), service.make_code(7)
        assert re.fullmatch(r"\d{6}", code)
        assert service.check_token(7, token) == "ok" and service.check_code(7, code)
        clock.at = START + timedelta(seconds=15)  # the next slot: a new token
        assert service.make_token(7) != token and service.make_code(7) != code
        assert service.check_token(7, token) == "ok"  # still within the grace period
        clock.at = START + timedelta(seconds=29)
        assert service.check_token(7, token) == "ok" and service.check_code(7, code)
        clock.at = START + timedelta(seconds=30)
        assert service.check_token(7, token) == "expired"
        assert not service.check_code(7, code)


def test_forged_and_foreign_tokens_are_refused(app, clock):
    with app.app_context():
        clock.at = START
        token = service.make_token(7)
        slot, sig = token.split(".")
        forged = slot + "." + ("0" if sig[0] != "0" else "1") + sig[1:]
        assert service.check_token(7, forged) == "invalid"
        assert service.check_token(8, token) == "invalid"  # another session's token
        assert service.check_token(7, "") == "invalid"
        assert service.check_token(7, "abc.def") == "invalid"
        later = service.make_token(7, int(slot) + 100)  # a slot far in the future
        assert service.check_token(7, later) == "expired"
        assert not service.check_code(7, "12345x")


def test_tokens_agree_across_app_servers_with_the_same_secret(tmp_path, clock):
    from kb import create_app

    from .conftest import make_config

    one = create_app(make_config(tmp_path / "one", SECRET_KEY="shared"))
    two = create_app(make_config(tmp_path / "two", SECRET_KEY="shared"))
    other = create_app(make_config(tmp_path / "three", SECRET_KEY="different"))
    clock.at = START
    with one.app_context():
        token = service.make_token(3)
    with two.app_context():
        assert service.check_token(3, token) == "ok"
    with other.app_context():
        assert service.check_token(3, token) == "invalid"


# -- the window ------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset, expected", [
    (timedelta(minutes=-31), None),            # not open yet
    (timedelta(minutes=-30), "present"),       # opens 30 min before the start
    (timedelta(minutes=10), "present"),        # on time up to 10 min after the start
    (timedelta(minutes=10, seconds=1), "late"),
    (timedelta(hours=2), "late"),              # still open at the end
    (timedelta(hours=2, seconds=1), None),     # closed
])
def test_window_edges(app, world, clock, offset, expected):
    clock.at = START + offset
    with app.app_context():
        session = db.session.get(TrainingSession, world["session"])
        user = db.session.get(User, world["d1"])
        outcome = service.check_in(session, user, "a" * 32)
        assert outcome.ok is (expected is not None)
        if expected is None:
            assert "签到" in outcome.message
    assert _records(app, world["session"]) == ({world["d1"]: expected} if expected else {})


def test_window_settings_come_from_config(tmp_path, clock):
    from .conftest import _build, make_config

    app = _build(make_config(tmp_path, ATTENDANCE_LATE_AFTER=0, ATTENDANCE_OPEN_BEFORE=5))
    ids = make_world(app)
    clock.at = START + timedelta(seconds=1)
    with app.app_context():
        session = db.session.get(TrainingSession, ids["session"])
        assert service.check_in(session, db.session.get(User, ids["d1"]), None).status == "late"
        clock.at = START - timedelta(minutes=6)
        assert not service.check_in(session, db.session.get(User, ids["d2"]), None).ok
        db.engine.dispose()


# -- check-in over HTTP ----------------------------------------------------------------------------------

def _scan(client, app, session_id):
    with app.app_context():
        token = service.make_token(session_id)
    return client.get(f"/attendance/c/{session_id}?t={token}")


def _pass_from(page: str) -> str:
    return re.search(r'name="p" value="([^"]+)"', page).group(1)


def test_logged_in_person_checks_in_with_one_tap_once(app, world, clock, monkeypatch):
    events = []
    monkeypatch.setattr(kb, "emit", lambda event, app=None: events.append(event))
    client = app.test_client()
    login(client, "d1")
    page = _scan(client, app, world["session"])
    assert page.status_code == 200 and "确认签到" in page.get_data(as_text=True)
    assert "kb_att_device" in page.headers.get("Set-Cookie", "")
    p = _pass_from(page.get_data(as_text=True))
    clock.at += timedelta(minutes=1)  # the QR code rotated meanwhile: the page's pass still works
    done = client.post(f"/attendance/c/{world['session']}", data={"p": p})
    assert done.status_code == 200 and "签到成功（出席）" in done.get_data(as_text=True)
    again = client.post(f"/attendance/c/{world['session']}", data={"p": p})
    assert "无需重复签到" in again.get_data(as_text=True)
    assert _records(app, world["session"]) == {world["d1"]: "present"}
    assert len(events) == 1
    event = events[0]
    assert event.key == f"attendance:{world['session']}:{world['d1']}"
    assert event.status == "出席" and event.hours == 2.0 and event.class_title == "代表履职培训班"


def test_one_phone_cannot_check_in_two_people(app, world, clock):
    client = app.test_client()
    login(client, "d1")
    p = _pass_from(_scan(client, app, world["session"]).get_data(as_text=True))
    assert client.post(f"/attendance/c/{world['session']}", data={"p": p}).status_code == 200
    client.post("/logout")
    login(client, "d2")  # same browser, so the same device cookie
    p = _pass_from(_scan(client, app, world["session"]).get_data(as_text=True))
    refused = client.post(f"/attendance/c/{world['session']}", data={"p": p})
    assert refused.status_code == 409 and "这部手机已为另一位学员签到" in refused.get_data(as_text=True)
    assert _records(app, world["session"]) == {world["d1"]: "present"}


def test_scan_when_logged_out_leads_through_login_back_to_check_in(app, world, clock):
    client = app.test_client()
    response = _scan(client, app, world["session"])
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    from urllib.parse import parse_qs, urlsplit

    target = parse_qs(urlsplit(response.headers["Location"]).query)["next"][0]
    clock.at += timedelta(minutes=2)  # typing the password takes a while
    logged = client.post("/login?next=" + target, data={"login": "d2", "password": "pw"})
    assert logged.status_code == 302 and logged.headers["Location"].endswith(target)
    page = client.get(target)
    assert page.status_code == 200
    done = client.post(f"/attendance/c/{world['session']}", data={"p": _pass_from(page.get_data(as_text=True))})
    assert "签到成功" in done.get_data(as_text=True)
    assert _records(app, world["session"]) == {world["d2"]: "present"}


def test_bad_tokens_and_strangers_get_a_message_and_no_record(app, world, clock):
    client = app.test_client()
    login(client, "d1")
    sid = world["session"]
    with app.app_context():
        old = service.make_token(sid)
    clock.at += timedelta(seconds=45)
    expired = client.get(f"/attendance/c/{sid}?t={old}")
    assert expired.status_code == 400 and "二维码已过期" in expired.get_data(as_text=True)
    forged = client.get(f"/attendance/c/{sid}?t=123.{'0' * 20}")
    assert forged.status_code == 400 and "二维码无效" in forged.get_data(as_text=True)
    no_pass = client.post(f"/attendance/c/{sid}", data={"p": "garbage"})
    assert no_pass.status_code == 400
    outsider = app.test_client()
    login(outsider, "outsider")
    refused = _scan(outsider, app, sid)
    assert refused.status_code == 403 and "不在本次培训的名单中" in refused.get_data(as_text=True)
    assert _records(app, sid) == {}


def test_code_typed_on_the_phone(app, world, clock):
    client = app.test_client()
    login(client, "d1")
    with app.app_context():
        code = service.make_code(world["session"])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = client.post("/attendance/code", data={"code": wrong})
    assert refused.status_code == 400 and "签到码不正确" in refused.get_data(as_text=True)
    assert _records(app, world["session"]) == {}
    ok = client.post("/attendance/code", data={"code": code})
    assert ok.status_code == 200 and "签到成功" in ok.get_data(as_text=True)
    assert _records(app, world["session"]) == {world["d1"]: "present"}


def test_concurrent_scans_record_one_check_in(db_app, clock):
    ids = make_world(db_app)
    barrier = threading.Barrier(2)
    results = []

    def scan(device):
        with db_app.app_context():
            session = db.session.get(TrainingSession, ids["session"])
            user = db.session.get(User, ids["d1"])
            barrier.wait()
            results.append(service.check_in(session, user, device))
            db.session.remove()

    threads = [threading.Thread(target=scan, args=(d * 32,)) for d in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in results), [r.message for r in results]
    assert sorted(r.already for r in results) == [False, True]
    with db_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Record)) == 1


# -- organiser -------------------------------------------------------------------------------------------

def test_leave_request_approved_and_refused(app, world, clock):
    clock.at = START - timedelta(days=1)
    sid = world["session"]
    for name in ("d1", "d2"):
        c = app.test_client()
        login(c, name)
        r = c.post(f"/attendance/sessions/{sid}/leave", data={"reason": "村里开会"}, follow_redirects=True)
        assert "请假申请已提交" in r.get_data(as_text=True)
    outsider = app.test_client()
    login(outsider, "outsider")
    assert outsider.post(f"/attendance/sessions/{sid}/leave", data={"reason": "x"}).status_code == 404
    staff = app.test_client()
    login(staff, "staff")
    page = staff.get(f"/attendance/sessions/{sid}").get_data(as_text=True)
    assert "村里开会" in page and "待审批" in page
    with app.app_context():
        leaves = {lr.user_id: lr.id for lr in db.session.scalars(select(LeaveRequest))}
    staff.post(f"/attendance/leaves/{leaves[world['d1']]}/decide", data={"decision": "approve"})
    staff.post(f"/attendance/leaves/{leaves[world['d2']]}/decide", data={"decision": "refuse"})
    assert _records(app, sid) == {world["d1"]: "leave"}
    with app.app_context():
        states = {lr.user_id: lr.state for lr in db.session.scalars(select(LeaveRequest))}
        assert states == {world["d1"]: "approved", world["d2"]: "refused"}
    # Once the session started, leave is no longer requested online.
    clock.at = START + timedelta(minutes=1)
    c = app.test_client()
    login(c, "d3")
    r = c.post(f"/attendance/sessions/{sid}/leave", data={"reason": "晚了"}, follow_redirects=True)
    assert "不能再在线请假" in r.get_data(as_text=True)


def test_unmarked_become_absent_after_the_end(app, world, clock, runner):
    sid = world["session"]
    clock.at = START
    with app.app_context():
        service.check_in(db.session.get(TrainingSession, sid), db.session.get(User, world["d1"]), None)
    staff = app.test_client()
    login(staff, "staff")
    staff.get(f"/attendance/sessions/{sid}")
    assert _records(app, sid) == {world["d1"]: "present"}  # not over yet
    clock.at = START + timedelta(hours=2, minutes=1)
    staff.get(f"/attendance/sessions/{sid}")  # read after the end: closes lazily
    assert _records(app, sid) == {world["d1"]: "present", world["d2"]: "absent", world["d3"]: "absent"}
    with app.app_context():
        assert db.session.get(TrainingSession, sid).closed_at is not None
        logs = db.session.scalars(select(MarkLog).where(MarkLog.new_status == "absent")).all()
        assert len(logs) == 2 and all(log.actor_id is None for log in logs)


def test_close_sessions_command(app, world, clock, runner):
    clock.at = START + timedelta(days=1)
    result = runner.invoke(["attendance", "close-sessions"])
    assert "closed 1 session" in result.output
    assert set(_records(app, world["session"]).values()) == {"absent"}
    assert "closed 0 session" in runner.invoke(["attendance", "close-sessions"]).output


def test_bulk_marking_and_corrections_are_logged(app, world, clock, monkeypatch):
    events = []
    monkeypatch.setattr(kb, "emit", lambda event, app=None: events.append(event))
    sid = world["session"]
    staff = app.test_client()
    login(staff, "staff")
    r = staff.post(f"/attendance/sessions/{sid}/mark",
                   data={"bulk_status": "present", "pick": [world["d1"], world["d2"]]})
    assert r.status_code == 302
    assert _records(app, sid) == {world["d1"]: "present", world["d2"]: "present"}
    staff.post(f"/attendance/sessions/{sid}/mark", data={f"status_{world['d2']}": "absent",
                                                         f"status_{world['d1']}": "present"})
    assert _records(app, sid)[world["d2"]] == "absent"
    with app.app_context():
        log = db.session.scalars(select(MarkLog).order_by(MarkLog.id)).all()
        assert [(e.user_id, e.old_status, e.new_status) for e in log] == [
            (world["d1"], None, "present"), (world["d2"], None, "present"),
            (world["d2"], "present", "absent")]
        assert all(e.actor_id == world["staff"] for e in log)
    assert sorted(e.user_id for e in events) == sorted([world["d1"], world["d2"]])


def test_organiser_pages_are_scoped(app, world, clock):
    sid, cid = world["session"], world["class"]
    chair = app.test_client()
    login(chair, "chair1")  # a township chair cannot open the county's class
    for url in (f"/attendance/classes/{cid}", f"/attendance/sessions/{sid}",
                f"/attendance/sessions/{sid}/projector", f"/attendance/sessions/{sid}/live.json",
                f"/attendance/classes/{cid}/report"):
        assert chair.get(url).status_code == 404, url
    deputy = app.test_client()
    login(deputy, "d1")
    assert deputy.get(f"/attendance/sessions/{sid}").status_code == 403
    # The chair's own township class: they can run it, but enrol only their township.
    r = chair.post("/attendance/classes/new", data={"title": "东镇学习会", "org_unit_id": world["t1"]})
    assert r.status_code == 302
    with app.app_context():
        own = db.session.scalar(select(TrainingClass).where(TrainingClass.title == "东镇学习会"))
    page = chair.get(f"/attendance/classes/{own.id}/enrol").get_data(as_text=True)
    assert "张一" in page and "李三" not in page
    chair.post(f"/attendance/classes/{own.id}/enrol", data={"action": "pick", "user_id": [world["d1"], world["d3"]]})
    with app.app_context():
        enrolled = set(db.session.scalars(select(Enrolment.user_id).where(Enrolment.class_id == own.id)))
    assert enrolled == {world["d1"]}
    # A chair cannot create a class for the county.
    r = chair.post("/attendance/classes/new", data={"title": "x", "org_unit_id": world["county"]})
    assert r.status_code == 200


def test_enrol_by_filters(app, world, clock):
    staff = app.test_client()
    login(staff, "staff")
    r = staff.post("/attendance/classes/new", data={"title": "新班", "org_unit_id": world["county"]})
    cid = int(r.headers["Location"].rsplit("/", 1)[1])
    staff.post(f"/attendance/classes/{cid}/enrol", data={"action": "all", "org": str(world["t1"]), "role": "deputy"})
    with app.app_context():
        enrolled = set(db.session.scalars(select(Enrolment.user_id).where(Enrolment.class_id == cid)))
    assert enrolled == {world["d1"], world["d2"]}


def test_roster_import_preview_then_commit(app, world, clock):
    staff = app.test_client()
    login(staff, "staff")
    r = staff.post("/attendance/classes/new", data={"title": "导入班", "org_unit_id": world["county"]})
    cid = int(r.headers["Location"].rsplit("/", 1)[1])
    body = ("姓名,乡镇,手机号,代表证号\r\n张一,东镇,138 0000 0001,\r\n张二,东镇,,db-002\r\n"
            "无名,东镇,13900000000,\r\n").encode("gbk")
    preview = staff.post(f"/attendance/classes/{cid}/import", data={"file": (io.BytesIO(body), "名单.csv")},
                         content_type="multipart/form-data")
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "可报名 2 人" in page and "无名" in page
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Enrolment).where(Enrolment.class_id == cid)) == 0
    ids = re.findall(r'name="user_id" value="(\d+)"', page)
    staff.post(f"/attendance/classes/{cid}/enrol", data={"action": "pick", "user_id": ids})
    with app.app_context():
        enrolled = set(db.session.scalars(select(Enrolment.user_id).where(Enrolment.class_id == cid)))
    assert enrolled == {world["d1"], world["d2"]}


def test_session_added_in_local_time(app, world, clock):
    staff = app.test_client()
    login(staff, "staff")
    staff.post(f"/attendance/classes/{world['class']}/sessions",
               data={"day": "2026-03-10", "start": "09:00", "end": "11:30", "place": "礼堂", "hours": "2.5"})
    with app.app_context():
        s = db.session.scalar(select(TrainingSession).where(TrainingSession.place == "礼堂"))
        assert (s.starts_at, s.ends_at, s.hours) == (datetime(2026, 3, 10, 1, 0), datetime(2026, 3, 10, 3, 30), 2.5)
    page = staff.get(f"/attendance/classes/{world['class']}").get_data(as_text=True)
    assert "2026-03-10 09:00–11:30" in page


def test_projector_live_sheet_and_paper(app, world, clock):
    sid = world["session"]
    staff = app.test_client()
    login(staff, "staff")
    page = staff.get(f"/attendance/sessions/{sid}/projector").get_data(as_text=True)
    assert "<svg" in page and "att-code" in page and "projector.js" in page
    data = staff.get(f"/attendance/sessions/{sid}/qr.json").get_json()
    assert data["svg"].startswith("<svg") and re.fullmatch(r"\d{6}", data["code"])
    assert f"/attendance/c/{sid}?t=" in data["url"]
    sheet = staff.get(f"/attendance/sessions/{sid}/sheet").get_data(as_text=True)
    with app.app_context():
        code = service.paper_code(sid, world["d2"])
    assert code in sheet and "张二" in sheet
    r = staff.post(f"/attendance/sessions/{sid}/paper", data={"codes": f"{code}\n999999x", "status": "present"})
    text = r.get_data(as_text=True)
    assert "已识别 1 人" in text and "999999x" in text
    assert _records(app, sid) == {world["d2"]: "present"}
    live = staff.get(f"/attendance/sessions/{sid}/live.json").get_json()
    assert live["count"] == 1 and [p["name"] for p in live["present"]] == ["张二"]
    assert {p["name"] for p in live["missing"]} == {"张一", "李三"}


def test_my_trainings_and_dashboard_card(app, world, clock):
    client = app.test_client()
    login(client, "d1")
    page = client.get("/attendance/").get_data(as_text=True)
    assert "代表履职培训班" in page and "请假" in page
    home = client.get("/").get_data(as_text=True)
    assert "近期培训" in home and "我的培训" in home


# -- reports -----------------------------------------------------------------------------------------------

def test_rate_counts_every_session_of_the_class(app, clock):
    # Four sessions: two are over, two are still to come.
    ids = make_world(app, sessions=((0, 2), (1, 2), (10, 2), (11, 2)))
    clock.at = START + timedelta(days=2)
    with app.app_context():
        s1 = db.session.get(TrainingSession, ids["sessions"][0])
        service.set_status(s1, ids["d1"], "present", None)
        service.set_status(s1, ids["d3"], "late", None)
        service.set_status(db.session.get(TrainingSession, ids["sessions"][1]), ids["d3"], "present", None)
        db.session.commit()
        by_person = service.rate_by("person", [ids["d1"], ids["d2"], ids["d3"], ids["outsider"]], 2026)
        assert by_person == {ids["d1"]: 0.25, ids["d2"]: 0.0, ids["d3"]: 0.5}
        by_town = service.rate_by("township", [ids["t1"], ids["t2"]], 2026)
        assert by_town == {ids["t1"]: 0.125, ids["t2"]: 0.5}
        assert service.rate_by("township", [ids["t1"]], 2025) == {}
        pm = kb.plugin_manager(app)
        from kb.pluginhost import collect

        columns = collect(pm, "kb_report_columns", scope=ReportScope("township", (ids["t1"],), 2026))
        column = next(c for c in columns if c.key == "attendance_rate")
        assert column.kind == "percent"
        assert column.values(ReportScope("township", (ids["t1"],), 2026)) == {ids["t1"]: 12.5}
    staff = app.test_client()
    login(staff, "staff")
    report = staff.get(f"/attendance/classes/{ids['class']}/report").get_data(as_text=True)
    assert "25.0%" in report and "50.0%" in report
    town = staff.get("/attendance/report?year=2026").get_data(as_text=True)
    assert "东镇" in town and "12.5%" in town
    people = staff.get(f"/attendance/report/org/{ids['t2']}?year=2026").get_data(as_text=True)
    assert "李三" in people and "50.0%" in people and "张一" not in people
    csv = staff.get(f"/attendance/report/org/{ids['t1']}.csv?year=2026").data.decode("utf-8-sig")
    assert "张一" in csv and "25.0%" in csv
    chair = app.test_client()
    login(chair, "chair1")
    assert chair.get(f"/attendance/report/org/{ids['t2']}?year=2026").status_code == 404
    assert "张一" in chair.get(f"/attendance/report/org/{ids['t1']}?year=2026").get_data(as_text=True)
    # Reading the report after the ends closed the two past sessions.
    assert set(_records(app, ids["sessions"][0]).values()) == {"present", "late", "absent"}


def test_exports_are_excel_safe(app, world, clock):
    with app.app_context():
        db.session.get(User, world["d1"]).name = "=HYPERLINK(1)"
        db.session.commit()
    staff = app.test_client()
    login(staff, "staff")
    for url in (f"/attendance/sessions/{world['session']}/export.csv",
                f"/attendance/classes/{world['class']}/report.csv", "/attendance/report.csv?year=2026"):
        r = staff.get(url)
        assert r.status_code == 200 and r.data.startswith(b"\xef\xbb\xbf"), url
        assert b"\n=HYPERLINK" not in r.data and b",=HYPERLINK" not in r.data
    assert "'=HYPERLINK(1)" in staff.get(f"/attendance/classes/{world['class']}/report.csv").data.decode("utf-8-sig")
    from openpyxl import load_workbook

    r = staff.get(f"/attendance/classes/{world['class']}/report.xlsx")
    ws = load_workbook(io.BytesIO(r.data)).active
    values = [c.value for row in ws.iter_rows() for c in row]
    assert "'=HYPERLINK(1)" in values and "出勤率" in values
    assert staff.get(f"/attendance/classes/{world['class']}/report.pdf").status_code == 404


def test_pages_reports_and_closing_on_both_databases(db_app, clock):
    """Every organiser page and report query, and the INSERT … SELECT of closing, on each backend."""
    ids = make_world(db_app, sessions=((0, 2), (3, 2)))
    sid, cid = ids["sessions"][0], ids["class"]
    clock.at = START
    with db_app.app_context():
        service.check_in(db.session.get(TrainingSession, sid), db.session.get(User, ids["d1"]), "d" * 32)
    staff = db_app.test_client()
    login(staff, "staff")
    for url in (f"/attendance/classes/{cid}", f"/attendance/classes/{cid}/enrol", f"/attendance/sessions/{sid}",
                f"/attendance/sessions/{sid}/projector", f"/attendance/sessions/{sid}/live",
                f"/attendance/sessions/{sid}/sheet", f"/attendance/sessions/{sid}/paper",
                f"/attendance/people/{ids['d1']}", "/attendance/classes"):
        assert staff.get(url).status_code == 200, url
    clock.at = START + timedelta(hours=3)
    for url in (f"/attendance/classes/{cid}/report", "/attendance/report?year=2026",
                f"/attendance/classes/{cid}/report.xlsx", "/attendance/report.csv?year=2026",
                f"/attendance/sessions/{sid}/export.csv", f"/attendance/sessions/{sid}/live.json"):
        assert staff.get(url).status_code == 200, url
    assert _records(db_app, sid) == {ids["d1"]: "present", ids["d2"]: "absent", ids["d3"]: "absent"}
    assert _records(db_app, ids["sessions"][1]) == {}  # not over yet
    report = staff.get(f"/attendance/classes/{cid}/report").get_data(as_text=True)
    assert "50.0%" in report  # one of two sessions
    deputy = db_app.test_client()
    login(deputy, "d1")
    page = deputy.get("/attendance/").get_data(as_text=True)
    assert "出席" in page and "50.0%" in page
    with db_app.app_context():
        assert service.rate_by("person", [ids["d1"], ids["d2"]], 2026) == {ids["d1"]: 0.5, ids["d2"]: 0.0}
        assert service.close_due_sessions() == 0


def test_session_edit_and_correction_log_and_custom_status_names(tmp_path, clock):
    from .conftest import _build, make_config

    app = _build(make_config(tmp_path, ATTENDANCE_STATUS_NAMES={"present": "到会", "late": "迟到",
                                                                  "leave": "请假", "absent": "未到会"}))
    ids = make_world(app)
    sid = ids["session"]
    staff = app.test_client()
    login(staff, "staff")
    form = staff.get(f"/attendance/sessions/{sid}/edit").get_data(as_text=True)
    assert 'value="2026-03-02"' in form and 'value="09:00"' in form
    staff.post(f"/attendance/sessions/{sid}/edit", data={"day": "2026-03-02", "start": "09:30", "end": "11:00",
                                                          "place": "新礼堂", "hours": "1.5", "title": "改期"})
    with app.app_context():
        s = db.session.get(TrainingSession, sid)
        assert (s.starts_at, s.place, s.hours) == (datetime(2026, 3, 2, 1, 30), "新礼堂", 1.5)
    staff.post(f"/attendance/sessions/{sid}/mark", data={f"status_{ids['d1']}": "present"})
    staff.post(f"/attendance/sessions/{sid}/mark", data={f"status_{ids['d1']}": "absent"})
    page = staff.get(f"/attendance/sessions/{sid}").get_data(as_text=True)
    assert "更正记录" in page and "到会 → 未到会" in page and "staff" in page
    clock.at = START + timedelta(days=1)  # over and closed: the time can no longer change
    staff.get(f"/attendance/sessions/{sid}")
    r = staff.post(f"/attendance/sessions/{sid}/edit", data={"day": "2026-03-03", "start": "09:30", "end": "11:00",
                                                              "place": "新礼堂", "hours": "1.5"}, follow_redirects=True)
    assert "不能再改时间" in r.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(TrainingSession, sid).starts_at == datetime(2026, 3, 2, 1, 30)
        db.engine.dispose()


def test_nav_items_by_role(app, world, clock):
    anonymous = app.test_client().get("/").get_data(as_text=True)
    assert "/attendance/" not in anonymous
    deputy = app.test_client()
    login(deputy, "d1")
    page = deputy.get("/").get_data(as_text=True)
    assert 'href="/attendance/"' in page and 'href="/attendance/classes"' not in page
    chair = app.test_client()
    login(chair, "chair1")
    assert 'href="/attendance/classes"' in chair.get("/").get_data(as_text=True)
    assert "近期培训" not in chair.get("/").get_data(as_text=True)  # not enrolled anywhere
