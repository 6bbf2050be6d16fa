"""Plugin `progress`: credit rules, heartbeats, completion, ledger, claims, required courses,
reports (scope, filters, exports), reminders."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select

from kb import create_app, dbmigrate, emit, get_catalog
from kb.cli import run_sync
from kb.events import AttendanceMarked, LessonCompleted, QuizPassed
from kb.extensions import db
from kb.models import OrgUnit, User, utcnow
from kb.plugins.progress import rules, service
from kb.plugins.progress.models import Claim, LedgerEntry, LessonProgress, Notice, RequiredCourse

from .conftest import make_config
from .conftest import make_org as _org
from .conftest import make_user as _user

# -- helpers ----------------------------------------------------------------------------------





def make_world(app):
    """Province → county A (A1, A2) and county B (B1); ids of orgs and people."""
    with app.app_context():
        p = _org("province", "测试省")
        ca, cb = _org("county", "甲县", p), _org("county", "乙县", p)
        a1, a2, b1 = _org("township", "甲一镇", ca), _org("township", "甲二镇", ca), _org("township", "乙一镇", cb)
        u = {
            "d1": _user("d1", "deputy", a1, "代表甲"), "d2": _user("d2", "deputy", a1, "代表乙"),
            "chair": _user("chair", "chair", a1, "主席甲"), "sec": _user("sec", "secretary", a1, "秘书甲"),
            "n1": _user("n1", "deputy", a2, "邻镇代表"), "x1": _user("x1", "deputy", b1, "外县代表"),
            "staff": _user("staff", "county_staff", ca, "县干部甲"),
            "bstaff": _user("bstaff", "county_staff", cb, "县干部乙"),
            "admin": _user("root", "admin", p, "管理员"),
        }
        db.session.commit()
        ids = {k: v.id for k, v in u.items()}
        ids.update(p=p.id, ca=ca.id, cb=cb.id, a1=a1.id, a2=a2.id, b1=b1.id)
    return ids


def login(app, username):
    client = app.test_client()
    assert client.post("/login", data={"login": username, "password": "pw"}).status_code == 302
    return client


def lesson(app, course="basics", slug="status"):
    with app.app_context():
        return get_catalog().lesson(course, slug)


def ledger(app, user_id):
    with app.app_context():
        return db.session.execute(select(LedgerEntry.source, LedgerEntry.hours, LedgerEntry.event_key)
                                  .where(LedgerEntry.user_id == user_id)
                                  .order_by(LedgerEntry.id)).all()


@pytest.fixture
def papp(db_app):
    run_sync(db_app)
    return db_app


@pytest.fixture
def world(papp):
    return make_world(papp)


# -- credit rules (table-driven) ----------------------------------------------------------------

DEFAULT = rules.parse_credit_rules(None)


@pytest.mark.parametrize(("rules_json", "minutes", "hours"), [
    (None, 45, 1.0), (None, 30, 1.0), (None, 29, 0.5), (None, 15, 0.5), (None, 14, 0.25),
    (None, 1, 0.25), (None, 0, 0.25),
    ('{"lesson": [[20, 2], [10, 1]]}', 25, 2.0), ('{"lesson": [[20, 2], [10, 1]]}', 10, 1.0),
    ('{"lesson": [[20, 2], [10, 1]]}', 9, 0.0),
    ({"lesson": [[0, 0.1]]}, 120, 0.1),
])
def test_lesson_credit_rules(rules_json, minutes, hours):
    assert rules.lesson_hours(minutes, rules.parse_credit_rules(rules_json)) == hours


@pytest.mark.parametrize(("rules_json", "quiz", "session_hours", "attendance"), [
    (None, 0.5, 3.5, 3.5), ('{"quiz": 1}', 1.0, 2, 2.0), ('{"attendance": 2}', 0.5, 6, 2.0),
    (None, 0.5, -3, 0.0),
])
def test_quiz_and_attendance_credit_rules(rules_json, quiz, session_hours, attendance):
    parsed = rules.parse_credit_rules(rules_json)
    assert rules.quiz_hours(parsed) == quiz
    assert rules.attendance_hours(session_hours, parsed) == attendance


def test_bad_credit_rules_stop_the_app(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        create_app(make_config(tmp_path, CREDIT_RULES="{not json"))


def test_targets_default_and_configured(tmp_path):
    app = create_app(make_config(tmp_path, PROGRESS_TARGETS='{"deputy": 12}'))
    with app.app_context():
        assert rules.target_for("deputy") == 12 and rules.target_for("chair") == 50
        assert rules.target_for("county_staff") == 0


# -- heartbeats --------------------------------------------------------------------------------

def test_heartbeat_credits_wall_time_with_caps(papp, world):
    view = lesson(papp)  # 10 minutes: at most 20 minutes credited
    with papp.app_context():
        user = db.session.get(User, world["d1"])
        t0 = utcnow()
        assert service.heartbeat(user, view, 0.1, now=t0).seconds == 0  # starts the clock
        assert service.heartbeat(user, view, 0.2, now=t0 + timedelta(seconds=15)).seconds == 15
        # A long pause (the phone was locked) credits one capped heartbeat, not the pause.
        assert service.heartbeat(user, view, 0.2, now=t0 + timedelta(minutes=30, seconds=15)).seconds == 45
        # 10,000 heartbeats within the same second add nothing beyond wall time.
        t1 = t0 + timedelta(minutes=30, seconds=15)
        for i in range(10_000 if db.engine.dialect.name == "sqlite" else 2_000):
            service.heartbeat(user, view, 0.2, now=t1 + timedelta(microseconds=i * 50))
        assert service.get_row(user.id, view.id).seconds <= 45 + 1
        # A clock going backwards credits nothing.
        assert service.heartbeat(user, view, 0.2, now=t0).seconds <= 46
        # Per-lesson cap: 2 × 10 minutes.
        t = t1 + timedelta(seconds=1)
        for _ in range(200):
            t += timedelta(seconds=30)
            service.heartbeat(user, view, 0.5, now=t)
        row = service.get_row(user.id, view.id)
        assert row.seconds == 20 * 60
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(LessonProgress)) == 1


def test_heartbeat_is_one_statement_until_it_completes(papp, world):
    """A heartbeat writes with one upsert; only the one that meets the rule does more (the
    completion, the course total, the ledger). Same-moment or earlier heartbeats change nothing."""
    from sqlalchemy import event

    view = lesson(papp)  # 10 min: completes at 5 min read to 90 %
    with papp.app_context():
        user = db.session.get(User, world["d1"])
        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            t = utcnow()
            service.heartbeat(user, view, 0.95, now=t)
            assert len(statements) == 1 and statements[0].lstrip().startswith("INSERT")
            assert service.heartbeat(user, view, 0.5, now=t).max_scroll == 0.95  # same moment
            for _ in range(9):
                t += timedelta(seconds=30)
                statements.clear()
                result = service.heartbeat(user, view, 0.95, now=t)
                assert len(statements) == 1 and not result.completed
            assert result.seconds == 270
            t += timedelta(seconds=30)
            statements.clear()
            result = service.heartbeat(user, view, 0.95, now=t)
            assert result.just_completed and result.seconds == 300 and len(statements) > 1
            statements.clear()
            assert service.heartbeat(user, view, 0.95, now=t + timedelta(seconds=1)).completed
            assert len(statements) == 1
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        db.session.commit()
    assert ledger(papp, world["d1"]) == [("lesson", 0.25, f"lesson:{world['d1']}:{view.id}")]


def test_heartbeat_endpoint_ignores_forged_fields(papp, world):
    view = lesson(papp)
    client = login(papp, "d1")
    body = {"lesson_id": view.id, "scroll": 0.3, "user_id": world["d2"],
            "time": "2099-01-01T00:00:00", "seconds": 99999}
    started = utcnow()
    for _ in range(50):
        r = client.post("/progress/beat", json=body)
        assert r.status_code == 200
    elapsed = (utcnow() - started).total_seconds()
    with papp.app_context():
        assert service.get_row(world["d2"], view.id) is None
        row = service.get_row(world["d1"], view.id)
        assert row.seconds <= elapsed + 1 and row.completed_at is None
    assert ledger(papp, world["d1"]) == [] and ledger(papp, world["d2"]) == []


@pytest.mark.parametrize("body", [None, {}, {"lesson_id": "1"}, {"lesson_id": 999999},
                                  {"lesson_id": 1.5}, [1, 2]])
def test_heartbeat_rejects_bad_payloads(papp, world, body):
    client = login(papp, "d1")
    r = client.post("/progress/beat", json=body) if body is not None else \
        client.post("/progress/beat", data="x", content_type="application/json")
    assert r.status_code in (400, 404)


def test_heartbeat_needs_sign_in_and_a_visible_lesson(papp, world):
    view = lesson(papp)
    assert papp.test_client().post("/progress/beat", json={"lesson_id": view.id}).status_code == 302
    hidden = lesson(papp, "duties", "chair-only")
    client = login(papp, "d1")
    assert client.post("/progress/beat", json={"lesson_id": hidden.id}).status_code == 404
    assert login(papp, "chair").post("/progress/beat", json={"lesson_id": hidden.id}).status_code == 200


def test_scroll_values_are_clamped(papp, world):
    view = lesson(papp)
    with papp.app_context():
        user = db.session.get(User, world["d1"])
        for bad in ("NaN", float("nan"), 7, -3, None, "abc"):
            service.heartbeat(user, view, bad)
        row = service.get_row(user.id, view.id)
        assert 0.0 <= row.max_scroll <= 1.0


# -- completion and the ledger ------------------------------------------------------------------

def test_reading_to_the_end_with_enough_time_completes_once(papp, world):
    view = lesson(papp)  # 10 min: needs 5 min and scroll ≥ 0.9
    with papp.app_context():
        user = db.session.get(User, world["d1"])
        t = utcnow()
        service.heartbeat(user, view, 0.95, now=t)
        for _ in range(9):  # 9 × 30 s = 4.5 min: not yet
            t += timedelta(seconds=30)
            assert not service.heartbeat(user, view, 0.95, now=t).completed
        t += timedelta(seconds=30)
        result = service.heartbeat(user, view, 0.95, now=t)
        assert result.completed and result.just_completed
        t += timedelta(seconds=30)
        assert not service.heartbeat(user, view, 0.95, now=t).just_completed
        db.session.commit()
    assert ledger(papp, world["d1"]) == [("lesson", 0.25, f"lesson:{world['d1']}:{view.id}")]


def test_done_button_needs_the_time(papp, world):
    view = lesson(papp)
    client = login(papp, "d1")
    r = client.post(f"/progress/lessons/{view.id}/done", follow_redirects=True)
    assert "再学习约 5 分钟" in r.get_data(as_text=True)
    with papp.app_context():
        user = db.session.get(User, world["d1"])
        t = utcnow() - timedelta(minutes=10)
        service.heartbeat(user, view, 0.3, now=t)
        for _ in range(10):
            t += timedelta(seconds=30)
            service.heartbeat(user, view, 0.3, now=t)
        db.session.commit()
    r = client.post(f"/progress/lessons/{view.id}/done", follow_redirects=True)
    assert "本课学完了" in r.get_data(as_text=True)
    client.post(f"/progress/lessons/{view.id}/done")
    assert [e[0] for e in ledger(papp, world["d1"])] == ["lesson"]
    page = client.get("/progress/").get_data(as_text=True)
    assert "乡镇人大的性质和地位" in page and "0.25" in page


def test_easy_completion_rule_from_config(tmp_path):
    app = create_app(make_config(tmp_path, PROGRESS_COMPLETION='{"time_fraction": 0}'))
    with app.app_context():
        dbmigrate.upgrade(app)
    run_sync(app)
    ids = make_world(app)
    view = lesson(app, "basics", "presidium")  # 12 min → 0.25
    client = login(app, "d1")
    client.post(f"/progress/lessons/{view.id}/done")
    assert ledger(app, ids["d1"]) == [("lesson", 0.25, f"lesson:{ids['d1']}:{view.id}")]


def test_events_from_other_plugins_feed_the_ledger_once(tmp_path):
    from kb.pluginhost import hookimpl

    class Emitter:
        """A test plugin that emits the events the quizzes and attendance plugins emit."""

        @hookimpl
        def kb_init_app(self, app):
            @app.post("/test-emit/<int:user_id>")
            def test_emit(user_id):  # noqa: ARG001 (exercised without the authz layer)
                emit(QuizPassed(user_id=user_id, key=f"quiz:q1:{user_id}", quiz_slug="q1",
                                quiz_title="地方组织法测验", attempt_id=1, score=90))
                emit(AttendanceMarked(user_id=user_id, key=f"att:5:{user_id}", session_id=5,
                                      class_id=2, class_title="集中培训班", status="出席", hours=3.5))
                db.session.commit()
                return "ok"
            test_emit._kb_access = ("public", ())

    app = create_app(make_config(tmp_path, TEST_PLUGINS=[("emitter", Emitter())],
                                 CREDIT_RULES='{"quiz": 1}'))
    with app.app_context():
        dbmigrate.upgrade(app)
    run_sync(app)
    ids = make_world(app)
    client = app.test_client()
    for _ in range(3):  # retried requests count once
        assert client.post(f"/test-emit/{ids['d1']}").status_code == 200
    assert sorted(ledger(app, ids["d1"])) == [("attendance", 3.5, f"att:5:{ids['d1']}"),
                                              ("quiz", 1.0, f"quiz:q1:{ids['d1']}")]
    with app.app_context():
        emit(LessonCompleted(user_id=ids["d1"], key="lesson:x", lesson_id=1, course_slug="basics",
                             lesson_slug="status", minutes=40, seconds=1200))
        emit(QuizPassed(user_id=987654, key="quiz:q1:987654", quiz_slug="q1", quiz_title="t",
                        attempt_id=1, score=1))  # unknown person: ignored, no error
        db.session.commit()
        assert service.hours_in_year(ids["d1"], rules.study_year(utcnow())) == 5.5
    assert "5.5" in login(app, "d1").get("/progress/").get_data(as_text=True)


# -- claims and corrections ---------------------------------------------------------------------

@pytest.mark.parametrize(("hours", "message"), [
    ("-2", "学时必须大于 0"), ("0", "学时必须大于 0"), ("500", "一次申报不能超过 40 学时"),
    ("abc", "学时"), ("nan", "学时必须大于 0"),
])
def test_claim_with_bad_hours_is_refused(papp, world, hours, message):
    client = login(papp, "d1")
    r = client.post("/progress/claims/new", data={"title": "党校培训", "held_on": date.today().isoformat(),
                                                  "hours": hours})
    assert r.status_code == 200 and message in r.get_data(as_text=True)
    with papp.app_context():
        assert db.session.scalar(select(func.count()).select_from(Claim)) == 0


def test_claim_future_date_refused(papp, world):
    client = login(papp, "d1")
    r = client.post("/progress/claims/new", data={"title": "党校培训", "hours": "2",
                                                  "held_on": (date.today() + timedelta(days=30)).isoformat()})
    assert "不能晚于今天" in r.get_data(as_text=True)


def test_claim_approved_by_county_staff_in_scope(papp, world):
    client = login(papp, "d1")
    with papp.app_context():
        held = rules.local_today()
    r = client.post("/progress/claims/new", data={"title": "县委党校专题班", "hours": "4",
                                                  "held_on": held.isoformat(), "note": "有结业证"})
    assert r.status_code == 302
    with papp.app_context():
        claim_id = db.session.scalar(select(Claim.id))
    # Other county's staff: not found. Chair: not allowed.
    assert login(papp, "bstaff").post(f"/progress/claims/{claim_id}/decide",
                                      data={"decision": "approve"}).status_code == 404
    assert "县委党校专题班" not in login(papp, "bstaff").get("/progress/claims").get_data(as_text=True)
    assert login(papp, "chair").get("/progress/claims").status_code == 403
    staff = login(papp, "staff")
    assert "县委党校专题班" in staff.get("/progress/claims").get_data(as_text=True)
    staff.post(f"/progress/claims/{claim_id}/decide", data={"decision": "approve"})
    staff.post(f"/progress/claims/{claim_id}/decide", data={"decision": "approve"})  # twice
    assert ledger(papp, world["d1"]) == [("claim", 4.0, f"claim:{claim_id}")]
    page = client.get("/progress/").get_data(as_text=True)
    assert "县委党校专题班" in page and "已通过" in page


def test_correction_is_a_new_entry(papp, world):
    with papp.app_context():
        service.add_entry(user_id=world["d1"], hours=2, source="claim", title="x", key="k1")
        db.session.commit()
    staff = login(papp, "staff")
    r = staff.post(f"/progress/people/{world['d1']}/correct", data={"hours": "-1.5", "note": "重复申报"})
    assert r.status_code == 302
    assert staff.post(f"/progress/people/{world['d1']}/correct",
                      data={"hours": "500", "note": "x"}).status_code == 302
    assert staff.post(f"/progress/people/{world['x1']}/correct",
                      data={"hours": "1", "note": "x"}).status_code == 404
    assert [(s, h) for s, h, _ in ledger(papp, world["d1"])] == [("claim", 2.0), ("correction", -1.5)]
    assert "重复申报" in staff.get(f"/progress/people/{world['d1']}").get_data(as_text=True)


# -- required courses ---------------------------------------------------------------------------

def test_required_courses_set_by_county_staff(papp, world):
    staff = login(papp, "staff")
    with papp.app_context():
        year = rules.local_today().year
    r = staff.post("/progress/required", data={"county": world["ca"], "course": "basics",
                                               "roles": ["deputy", "chair"], "year": year,
                                               "due_on": f"{year}-01-01"})
    assert r.status_code == 302
    # Staff of another county cannot set courses for county A.
    r = login(papp, "bstaff").post("/progress/required", data={
        "county": world["ca"], "course": "duties", "roles": ["deputy"], "year": year,
        "due_on": f"{year}-12-31"})
    assert r.status_code == 200
    with papp.app_context():
        assert db.session.scalar(select(func.count()).select_from(RequiredCourse)) == 2
        from kb import plugin_manager

        d1, x1 = db.session.get(User, world["d1"]), db.session.get(User, world["x1"])
        assert plugin_manager().hook.kb_required_courses(user=d1, year=year) == [["basics"]]
        assert plugin_manager().hook.kb_required_courses(user=x1, year=year) == [[]]
    page = login(papp, "d1").get("/progress/").get_data(as_text=True)
    assert "乡镇人大基础（测试）" in page
    if date(year, 1, 1) < rules_today(papp):
        assert "已逾期" in page
    assert "本年度没有指定必修课程" in login(papp, "sec").get("/progress/").get_data(as_text=True)
    with papp.app_context():
        req_id = db.session.scalar(select(RequiredCourse.id).where(RequiredCourse.role == "chair"))
    assert login(papp, "bstaff").post(f"/progress/required/{req_id}/delete").status_code == 404
    assert staff.post(f"/progress/required/{req_id}/delete").status_code == 302


def rules_today(app):
    with app.app_context():
        return rules.local_today()


# -- reports ----------------------------------------------------------------------------------

class TableParser(HTMLParser):
    """Collect the text of the cells of <table class="data progress-report">."""

    def __init__(self):
        super().__init__()
        self.rows, self._in_table, self._cell = [], False, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "progress-report" in (attrs.get("class") or ""):
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif self._in_table and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def screen_table(html):
    parser = TableParser()
    parser.feed(html)
    return parser.rows


def seed_hours(app, world):
    with app.app_context():
        year = rules.local_today().year
        service.add_entry(user_id=world["d1"], hours=25, source="claim", title="a", key="s1")
        service.add_entry(user_id=world["chair"], hours=10, source="claim", title="a", key="s2")
        service.add_entry(user_id=world["n1"], hours=30, source="claim", title="a", key="s3")
        service.add_entry(user_id=world["x1"], hours=30, source="claim", title="a", key="s4")
        db.session.add(RequiredCourse(county_id=world["ca"], year=year, course_slug="basics",
                                      role="deputy", due_on=date(year, 1, 1)))
        db.session.commit()


def test_report_scope_chair_and_secretary(papp, world):
    seed_hours(papp, world)
    for who in ("chair", "sec"):
        client = login(papp, who)
        r = client.get("/progress/report")
        assert r.status_code == 302 and r.location.endswith(f"/progress/report/{world['a1']}")
        page = client.get(f"/progress/report/{world['a1']}").get_data(as_text=True)
        assert "代表甲" in page and "主席甲" in page and "邻镇代表" not in page and "外县代表" not in page
        for org in ("a2", "b1", "ca", "p"):
            assert client.get(f"/progress/report/{world[org]}").status_code == 404
            assert client.get(f"/progress/report/{world[org]}/export.csv").status_code == 404
        assert client.get(f"/progress/people/{world['d1']}").status_code == 200
        assert client.get(f"/progress/people/{world['n1']}").status_code == 404
    assert login(papp, "d1").get(f"/progress/report/{world['a1']}").status_code == 403


def test_report_scope_county_staff_drills_down(papp, world):
    seed_hours(papp, world)
    staff = login(papp, "staff")
    r = staff.get("/progress/report")
    assert r.location.endswith(f"/progress/report/{world['ca']}")
    rows = screen_table(staff.get(f"/progress/report/{world['ca']}").get_data(as_text=True))
    assert rows[0][:2] == ["乡镇（街道）", "人数"]
    names = [r[0] for r in rows[1:]]
    assert names == ["甲一镇", "甲二镇"]
    a1 = rows[1]
    # 4 learners in A1: d1 (25 ≥ 20, but required course overdue), d2, chair (10 < 50), sec.
    assert a1[1:5] == ["4", "8.75", "1", "25.0%"]
    assert a1[5] == "4"  # nobody has finished: d1 has the overdue required course
    page = staff.get(f"/progress/report/{world['a1']}").get_data(as_text=True)
    assert "代表甲" in page and "<svg" in page and "外县代表" not in page
    for org in ("b1", "cb", "p"):
        assert staff.get(f"/progress/report/{world[org]}").status_code == 404
    assert staff.get(f"/progress/people/{world['x1']}").status_code == 404
    # Filters never widen the scope: a name from another county finds nothing.
    rows = screen_table(staff.get(f"/progress/report/{world['a1']}?q=外县").get_data(as_text=True))
    assert rows[1] == ["没有符合条件的记录。"]


def test_report_admin_sees_all_counties(papp, world):
    seed_hours(papp, world)
    admin = login(papp, "root")
    rows = screen_table(admin.get(f"/progress/report/{world['p']}").get_data(as_text=True))
    assert [r[0] for r in rows[1:]] == ["甲县", "乙县"]
    assert rows[2][1] == "1" and rows[2][2] == "30"
    assert admin.get(f"/progress/report/{world['b1']}").status_code == 200


def seed_quizzes_and_attendance(app, world):
    """Quiz attempts and class attendance for people of A1, A2 and B1 (this year)."""
    from kb.plugins.attendance.models import Enrolment, Record, TrainingClass, TrainingSession
    from kb.plugins.quizzes.models import Attempt, Quiz

    with app.app_context():
        now = utcnow().replace(month=6, day=15, hour=10)
        q1, q2 = Quiz(slug="qa", title="测验甲"), Quiz(slug="qb", title="测验乙")
        db.session.add_all([q1, q2])
        db.session.flush()

        def attempt(who, quiz, number, passed):
            db.session.add(Attempt(quiz_id=quiz.id, user_id=world[who], number=number,
                                   status="submitted", started_at=now, submitted_at=now,
                                   score=80 if passed else 40, passed=passed))
        # A1: d1 passed qa on the second try and failed qb; d2 passed qa.  -> 2 of 3 pairs
        attempt("d1", q1, 1, False)
        attempt("d1", q1, 2, True)
        attempt("d1", q2, 1, False)
        attempt("d2", q1, 1, True)
        attempt("n1", q1, 1, False)  # A2: 0 of 1
        attempt("x1", q2, 1, True)   # B1: 1 of 1
        klass = TrainingClass(title="集中培训", org_unit_id=world["ca"])
        db.session.add(klass)
        db.session.flush()
        sessions = [TrainingSession(class_id=klass.id, starts_at=now + timedelta(hours=h),
                                    ends_at=now + timedelta(hours=h + 2)) for h in (0, 24)]
        db.session.add_all(sessions)
        for who in ("d1", "d2", "n1", "x1"):
            db.session.add(Enrolment(class_id=klass.id, user_id=world[who]))
        db.session.flush()
        for who, session, status in (("d1", 0, "present"), ("d1", 1, "late"), ("d2", 0, "present"),
                                     ("n1", 0, "leave"), ("x1", 0, "present"), ("x1", 1, "present")):
            db.session.add(Record(session_id=sessions[session].id, user_id=world[who], status=status))
        db.session.commit()


def test_report_plugin_columns_at_every_level(papp, world):
    """Quizzes and attendance add their columns to county, township and person rows alike."""
    seed_hours(papp, world)
    seed_quizzes_and_attendance(papp, world)

    def columns(client, org):
        rows = screen_table(client.get(f"/progress/report/{world[org]}").get_data(as_text=True))
        header = rows[0]
        quiz, attend = header.index("测验通过率"), header.index("培训出勤率")
        return {r[0]: (r[quiz], r[attend]) for r in rows[1:]}

    staff = login(papp, "staff")
    assert columns(staff, "ca") == {"甲一镇": ("66.7%", "75.0%"), "甲二镇": ("0.0%", "0.0%")}
    admin = login(papp, "root")
    # Counties: 甲县 = A1 + A2: 2 of 4 quiz pairs passed; 3 of 6 expected sessions attended.
    assert columns(admin, "p") == {"甲县": ("50.0%", "50.0%"), "乙县": ("100.0%", "100.0%")}
    rows = screen_table(staff.get(f"/progress/report/{world['a1']}").get_data(as_text=True))
    header = rows[0]
    person = {r[0]: (r[header.index("通过测验数")], r[header.index("培训出勤率")]) for r in rows[1:]}
    assert person["代表甲"] == ("1", "100.0%") and person["代表乙"] == ("1", "50.0%")
    assert person["主席甲"] == ("—", "—")  # no attempts, not enrolled


def test_report_person_rows_filters_and_sort(papp, world):
    seed_hours(papp, world)
    client = login(papp, "chair")
    url = f"/progress/report/{world['a1']}"
    rows = screen_table(client.get(url + "?sort=progress_hours&dir=desc").get_data(as_text=True))
    header = rows[0]
    assert header[:5] == ["姓名", "职务", "本年学时", "年度目标", "完成率"]
    assert [r[0] for r in rows[1:3]] == ["代表甲", "主席甲"]
    d1 = rows[1]
    assert d1[2:7] == ["25", "20", "100.0%", "0/1", "1"]
    rows = screen_table(client.get(url + "?role=chair").get_data(as_text=True))
    assert [r[0] for r in rows[1:]] == ["主席甲"]
    rows = screen_table(client.get(url + "?status=incomplete").get_data(as_text=True))
    assert {r[0] for r in rows[1:]} == {"代表甲", "代表乙", "主席甲", "秘书甲"}


def test_exports_match_the_screen(papp, world):
    from openpyxl import load_workbook

    seed_hours(papp, world)
    for who, org, query in (("chair", "a1", "?sort=progress_rate&dir=desc"),
                            ("staff", "ca", ""), ("root", "p", ""),
                            ("staff", "a1", "?status=incomplete&role=deputy")):
        client = login(papp, who)
        base = f"/progress/report/{world[org]}"
        screen = screen_table(client.get(base + query).get_data(as_text=True))
        r = client.get(f"{base}/export.csv{query}")
        assert r.data.startswith(b"\xef\xbb\xbf")
        assert list(csv.reader(io.StringIO(r.data.decode("utf-8-sig")))) == screen
        r = client.get(f"{base}/export.xlsx{query}")
        ws = load_workbook(io.BytesIO(r.data)).active
        got = []
        for row in ws.iter_rows():
            cells = []
            for c in row:
                cell = c.value
                if isinstance(cell, (int, float)) and c.number_format.endswith("%"):
                    cells.append(f"{cell * 100:.1f}%")
                elif isinstance(cell, (int, float)):
                    v = round(float(cell), 2)
                    cells.append(str(int(v)) if v == int(v) else f"{v:.2f}".rstrip("0").rstrip("."))
                else:
                    cells.append(cell)
            got.append(cells)
        assert got == screen


def test_export_neutralises_formulas(papp, world):
    with papp.app_context():
        user = db.session.get(User, world["d2"])
        user.name = "=HYPERLINK(\"x\")"
        db.session.commit()
    client = login(papp, "chair")
    r = client.get(f"/progress/report/{world['a1']}/export.csv")
    assert "'=HYPERLINK" in r.data.decode("utf-8-sig")
    from openpyxl import load_workbook

    ws = load_workbook(io.BytesIO(client.get(f"/progress/report/{world['a1']}/export.xlsx").data)).active
    assert all(not str(c.value).startswith("=") for row in ws.iter_rows() for c in row if c.value)


def test_report_query_count_does_not_grow_with_rows(papp, world):
    from sqlalchemy import event

    def count(n_extra):
        with papp.app_context():
            a1 = db.session.get(OrgUnit, world["a1"])
            for i in range(n_extra):
                u = _user(f"extra{n_extra}-{i}", "deputy", a1)
                service.add_entry(user_id=u.id, hours=1, source="claim", title="t", key=f"e{n_extra}-{i}")
            db.session.commit()
        client = login(papp, "staff")
        counter = {"n": 0}
        with papp.app_context():
            engine = db.engine

        def before(*args, **kw):
            counter["n"] += 1
        event.listen(engine, "before_cursor_execute", before)
        try:
            assert client.get(f"/progress/report/{world['a1']}").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", before)
        return counter["n"]

    assert count(1) == count(30)


# -- reminders and notices ----------------------------------------------------------------------

def test_reminders_to_the_incomplete_list_and_secretary(papp, world):
    seed_hours(papp, world)
    staff = login(papp, "staff")
    r = staff.post(f"/progress/report/{world['a1']}/remind",
                   data={"to": "incomplete", "body": "请年底前学完必修课"})
    assert r.status_code == 302
    with papp.app_context():
        got = set(db.session.scalars(select(Notice.user_id)))
    assert got == {world["d1"], world["d2"], world["chair"], world["sec"]}
    staff.post(f"/progress/report/{world['a1']}/remind", data={"to": "secretary", "body": "请督促"})
    with papp.app_context():
        assert db.session.scalar(select(func.count()).where(Notice.user_id == world["sec"])) == 2
    # Out of scope and wrong roles.
    assert login(papp, "bstaff").post(f"/progress/report/{world['a1']}/remind",
                                      data={"to": "secretary", "body": "x"}).status_code == 404
    assert login(papp, "chair").post(f"/progress/report/{world['a1']}/remind",
                                     data={"to": "secretary", "body": "x"}).status_code == 403
    d1 = login(papp, "d1")
    home = d1.get("/").get_data(as_text=True)
    assert "站内提醒" in home and "请年底前学完必修课" in home
    with papp.app_context():
        notice_id = db.session.scalar(select(Notice.id).where(Notice.user_id == world["d1"]))
        other = db.session.scalar(select(Notice.id).where(Notice.user_id == world["d2"]))
    assert d1.post(f"/progress/notices/{other}/read").status_code == 404
    d1.post(f"/progress/notices/{notice_id}/read", data={"next": "/"})
    assert "请年底前学完必修课" not in d1.get("/").get_data(as_text=True)
    sec = login(papp, "sec")
    sec.post("/progress/notices/read-all")
    assert "请督促" not in sec.get("/").get_data(as_text=True)


# -- pages --------------------------------------------------------------------------------------

def test_lesson_panel_continue_learning_and_cards(papp, world):
    view = lesson(papp)
    client = login(papp, "d1")
    page = client.get(view.url).get_data(as_text=True)
    assert "学完了" in page and "progress/progress.js" in page and 'data-beat-url="/progress/beat"' in page
    assert "progress.js" not in papp.test_client().get(view.url).get_data(as_text=True)
    client.post("/progress/beat", json={"lesson_id": view.id, "scroll": 0.4})
    home = client.get("/").get_data(as_text=True)
    assert "继续学习" in home and f"{view.url}?resume=1" in home
    assert "学时" in home
    staff_home = login(papp, "staff").get("/").get_data(as_text=True)
    assert "学习进度概况" in staff_home and "打开学习报表" in staff_home


def test_printable_record(papp, world):
    client = login(papp, "d1")
    page = client.get("/progress/record").get_data(as_text=True)
    assert "学习档案" in page and "代表甲" in page and "progress/progress.css" in page
    css = client.get("/progress/static/progress/progress.css").get_data(as_text=True)
    assert "@media print" in css


def test_demo_data_loads_twice(tmp_path):
    from kb.demo import load_demo

    app = create_app(make_config(tmp_path))
    with app.app_context():
        dbmigrate.upgrade(app)
    run_sync(app)
    with app.app_context():
        load_demo(app, "pw")
        load_demo(app, "pw")
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) > 10
        assert db.session.scalar(select(func.count()).select_from(Claim)) == 1
    client = login(app, "staff1")
    page = client.get("/progress/report", follow_redirects=True).get_data(as_text=True)
    assert "青山镇" in page and "<svg" in page


def test_columns_from_other_plugins_show_and_export(tmp_path):
    from kb.pluginhost import hookimpl
    from kb.records import ReportColumn

    class Columns:
        """A plugin adding one column per level (as quizzes and attendance do)."""

        @hookimpl
        def kb_report_columns(self, scope):
            label = "测验平均分" if scope.level == "person" else "出勤人次"
            return [ReportColumn(key="t_extra", label=label, order=50,
                                 values=lambda s: {rid: rid % 7 for rid in s.row_ids})]

    app = create_app(make_config(tmp_path, TEST_PLUGINS=[("columns", Columns())]))
    with app.app_context():
        dbmigrate.upgrade(app)
    run_sync(app)
    ids = make_world(app)
    staff = login(app, "staff")
    rows = screen_table(staff.get(f"/progress/report/{ids['ca']}").get_data(as_text=True))
    assert "出勤人次" in rows[0] and rows[1][rows[0].index("出勤人次")] == str(ids["a1"] % 7)
    url = f"/progress/report/{ids['a1']}"
    rows = screen_table(staff.get(url + "?sort=t_extra&dir=desc").get_data(as_text=True))
    col = rows[0].index("测验平均分")
    assert [int(r[col]) for r in rows[1:]] == sorted((int(r[col]) for r in rows[1:]), reverse=True)
    exported = list(csv.reader(io.StringIO(
        staff.get(url + "/export.csv?sort=t_extra&dir=desc").data.decode("utf-8-sig"))))
    assert exported == rows


def test_report_totals_match_a_rebuild(papp, world):
    """The totals the reports read equal a recomputation from the ledger and lesson rows."""
    from click.testing import CliRunner

    from kb.cli import build_cli
    from kb.plugins.progress.models import CourseDone, UserYear

    seed_hours(papp, world)
    view = lesson(papp)
    with papp.app_context():
        user = db.session.get(User, world["d2"])
        t = utcnow()
        for i in range(12):
            service.heartbeat(user, view, 1.0, now=t + timedelta(seconds=30 * i))
        service.add_entry(user_id=world["d1"], hours=-2, source="correction", title="更正", key=None)
        db.session.commit()

        def snapshot():
            return (sorted(db.session.execute(select(UserYear.user_id, UserYear.year, UserYear.hours))),
                    sorted(db.session.execute(select(CourseDone.user_id, CourseDone.course_slug,
                                                     CourseDone.lessons))))
        before = snapshot()
        assert (world["d1"], rules.study_year(utcnow()), 23.0) in before[0]
        assert before[1] == [(world["d2"], "basics", 1)]
    out = CliRunner().invoke(build_cli(papp), ["progress-rebuild"], catch_exceptions=False).output
    assert "person-years" in out
    with papp.app_context():
        assert snapshot() == before


def test_course_progress_counts_only_lessons_the_person_can_see(papp, world):
    view = lesson(papp, "duties", "suggestions")
    with papp.app_context():
        user = db.session.get(User, world["d1"])
        row = service.heartbeat(user, view, 1.0)
        service.complete(user, view, service.get_row(user.id, view.id))
        db.session.commit()
        assert row is not None
    deputy = login(papp, "d1").get("/progress/").get_data(as_text=True)
    chair = login(papp, "chair").get("/progress/").get_data(as_text=True)
    assert re.search(r"代表履职（测试）</a></td><td>1/1<", deputy)  # the chair-only lesson is hidden
    assert re.search(r"代表履职（测试）</a></td><td>0/2<", chair)


def test_resume_position_is_where_the_reader_is(papp, world):
    view = lesson(papp)
    client = login(papp, "d1")
    client.post("/progress/beat", json={"lesson_id": view.id, "scroll": 0.8, "at": 0.8})
    client.post("/progress/beat", json={"lesson_id": view.id, "scroll": 0.8, "at": 0.3})
    with papp.app_context():
        row = service.get_row(world["d1"], view.id)
        assert row.max_scroll == 0.8 and row.last_scroll == 0.3
    assert 'data-resume="0.300"' in client.get(view.url).get_data(as_text=True)
