"""A person's data export (个人信息, PIPL access requests): sections, secrets, scope, audit, files.

Runs on SQLite and PostgreSQL with the demo data plus the records the demo does not make
(a wrong answer, daily practice, a decided leave request, an organiser's mark, a correction,
audit entries), so every section of every built-in plugin has rows.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from kb.exports import neutralize
from kb.extensions import db
from kb.models import AuditLog, User, utcnow
from kb.pluginhost import BUILTIN_PLUGINS, CORE_PLUGIN_NAME, PluginError, call_each, hookimpl
from kb.records import PersonalSection

from .conftest import login, make_config, make_org, make_user

EXPECTED = {
    "core": {"core.profile", "core.audit"},
    "quizzes": {"quizzes.attempts", "quizzes.answers", "quizzes.review", "quizzes.daily"},
    "attendance": {"attendance.enrolments", "attendance.records", "attendance.leave",
                   "attendance.marks"},
    "progress": {"progress.lessons", "progress.ledger", "progress.years", "progress.claims",
                 "progress.notices"},
}
PERSON = "t1-d01"
TYPED_MARK_NOTE = "会前电话说明迟到原因"


def _users():
    return {u.username: u for u in db.session.scalars(select(User))}


def _add_missing_records(app):
    """What the demo leaves out for t1-d01, made through the plugins' own services."""
    from kb.plugins.attendance import service as att
    from kb.plugins.attendance.models import LeaveRequest, TrainingSession
    from kb.plugins.progress import service as prog
    from kb.plugins.progress.models import LessonProgress
    from kb.plugins.quizzes import service as quiz
    from kb.plugins.quizzes.models import Attempt, Quiz

    users = _users()
    person, staff = users[PERSON], users["staff1"]
    now = utcnow()
    # A wrong answer in the 错题本 and a daily practice set with one answer.
    attempt = db.session.scalar(select(Attempt).where(Attempt.user_id == person.id))
    question = db.session.get(Quiz, attempt.quiz_id).live_questions()[0]
    quiz.review_many(person.id, [(question, ["X"], False)], now)
    with app.test_request_context():
        daily = quiz.daily_set(person)
        if daily.question_ids:
            quiz.daily_answer(person, daily, daily.question_ids[0], ["A"])
    # A leave request decided by staff, and an organiser's mark with a typed note.
    sessions = db.session.scalars(select(TrainingSession).order_by(TrainingSession.starts_at)).all()
    leave = LeaveRequest(session_id=sessions[-1].id, user_id=person.id, reason="本村换届选举",
                         state="approved", decided_by=staff.id, decided_at=now)
    db.session.add(leave)
    att.set_status(sessions[0], person.id, att.LATE, staff.id, note=TYPED_MARK_NOTE)
    # A 学时 correction by staff, and lesson progress if the demo's spread gave the person none.
    prog.add_entry(user_id=person.id, hours=1.5, source="correction", title="学时更正",
                   key=None, occurred_at=now, note="补录线下学习", created_by_id=staff.id)
    if db.session.scalar(select(LessonProgress.id).where(LessonProgress.user_id == person.id)) is None:
        from kb.models import Lesson

        lesson = db.session.scalars(select(Lesson)).first()
        db.session.add(LessonProgress(user_id=person.id, lesson_id=lesson.id,
                                      course_slug=lesson.course.slug, lesson_slug=lesson.slug,
                                      seconds=90, started_at=now - timedelta(hours=1)))
    db.session.commit()


@pytest.fixture
def demo(db_app):
    """The demo county on both backends, with every kind of personal record for t1-d01."""
    from kb.cli import run_sync
    from kb.demo import load_demo

    run_sync(db_app)
    with db_app.app_context():
        load_demo(db_app, "pw")
        _add_missing_records(db_app)
    # Audit entries about the person: staff edits them; they change their own password.
    staff = db_app.test_client()
    login(staff, "staff1")
    with db_app.app_context():
        person = _users()[PERSON]
        pid, org = person.id, person.org_unit_id
        form = {"name": person.name, "username": person.username, "phone": person.phone,
                "role": person.role, "org_unit_id": str(org), "deputy_card_no": "",
                "gender": "", "ethnicity": "汉族", "active": "y"}
    assert staff.post(f"/admin/users/{pid}", data=form).status_code == 302
    own = db_app.test_client()
    login(own, PERSON)
    assert own.post("/account/password", data={"current": "pw", "new": "a-new-pass-2026",
                                               "confirm": "a-new-pass-2026"}).status_code == 302
    return db_app


def _own_json(app, username=PERSON, password="a-new-pass-2026", lang=None):
    client = app.test_client()
    assert login(client, username, password).status_code == 302
    if lang:
        client.post("/prefs", data={"lang": lang})
    response = client.get("/account/data.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    return client, response.get_data(as_text=True), json.loads(response.get_data())


def _section(doc, key):
    [section] = [s for s in doc["sections"] if s["key"] == key]
    return section


def test_every_section_is_present_with_rows(demo):
    _client, _text, doc = _own_json(demo)
    keys = [s["key"] for s in doc["sections"]]
    assert set(keys) == set().union(*EXPECTED.values())
    assert keys[0] == "core.profile"
    empty = [s["key"] for s in doc["sections"] if not s["rows"]]
    assert not empty, f"sections without rows for the demo person: {empty}"
    for s in doc["sections"]:
        assert all(len(row) == len(s["columns"]) for row in s["rows"])
    with demo.app_context():
        person = _users()[PERSON]
        staff_name = _users()["staff1"].name
    assert doc["person"] == {"id": person.id, "username": PERSON, "name": person.name}
    profile = dict(_section(doc, "core.profile")["rows"])
    assert profile["用户名"] == PERSON and profile["手机号"] == person.phone
    assert profile["民族"] == "汉族" and profile["所在单位"] == "示例省 / 示例市 / 示例县 / 青山镇"
    # Organisers appear as actor labels; the person's typed note and the system's note are there.
    marks = _section(doc, "attendance.marks")
    assert [staff_name, TYPED_MARK_NOTE] == [marks["rows"][-1][5], marks["rows"][-1][7]]
    leave = _section(doc, "attendance.leave")["rows"][0]
    assert leave[3] == "本村换届选举" and leave[4] == "已批准" and leave[6] == staff_name
    ledger = _section(doc, "progress.ledger")["rows"]
    assert ["学时更正", "补录线下学习", staff_name] in [[r[3], r[4], r[7]] for r in ledger]
    notice = _section(doc, "progress.notices")["rows"][0]
    assert notice[0] == "请在年底前学完本年度必修课程。" and notice[1] == staff_name
    audit = _section(doc, "core.audit")["rows"]
    assert {r[1] for r in audit} >= {"user.update", "password.change"}
    update = next(r for r in audit if r[1] == "user.update")
    assert update[3] == staff_name and update[5] == f"修改账号 {PERSON}" and update[6] == ""
    change = next(r for r in audit if r[1] == "password.change")
    assert change[3] == person.name and change[6] != ""  # the person's own address


def test_the_html_page_shows_every_section(demo):
    client, _text, doc = _own_json(demo)
    page = client.get("/account/data").get_data(as_text=True)
    for section in doc["sections"]:
        assert section["title"] in page
    assert TYPED_MARK_NOTE in page and 'href="/account/data.xlsx"' in page
    assert 'href="/account/data"' in client.get("/").get_data(as_text=True)  # footer link


def test_no_secret_and_no_other_persons_data(demo):
    from kb.plugins.attendance.models import Record

    with demo.app_context():
        users = _users()
        person = users[PERSON]
        code = person.issue_one_time_code()  # a reset code the person has not used yet
        person.must_change_password = False
        record = db.session.scalar(select(Record).where(Record.user_id == person.id))
        record.device_id = "phone-7f3a9c"
        db.session.commit()
        secrets = [person.password_hash, person.otp_hash, code, "phone-7f3a9c"]
        actors = {users["staff1"].name}
        others = [(u.username, u.phone, u.name) for name, u in users.items() if name != PERSON]
    _client, text, doc = _own_json(demo)
    for secret in secrets:
        assert secret and secret not in text
    assert not any(word in text for word in ("password_hash", "otp_hash", "pbkdf2:", "scrypt:"))
    # The code's expiry is the person's information (the code itself is not).
    assert dict(_section(doc, "core.profile")["rows"])["一次性登录码有效期至"]
    leaks = []
    for username, phone, name in others:
        if username in text:
            leaks.append(username)
        if phone and phone in text:
            leaks.append(phone)
        if name not in actors and name in text:
            leaks.append(name)
    assert not leaks, f"other people's data in the export: {leaks}"


def test_a_staff_members_own_export_does_not_name_the_people_they_handled(demo):
    """staff1 edited t1-d01 and sent reminders: their export shows that they acted, not on whom."""
    _client, text, doc = _own_json(demo, "staff1", "pw")
    mine = [r for r in _section(doc, "core.audit")["rows"] if r[1] == "user.update"]
    assert mine and all(r[2] == "本人的操作" and r[5] == "" for r in mine)
    assert PERSON not in text
    with demo.app_context():
        assert _users()[PERSON].name not in text


def test_xlsx_opens_back_and_matches_the_json(demo):
    from openpyxl import load_workbook

    client, _text, doc = _own_json(demo)
    response = client.get("/account/data.xlsx")
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment; filename=personal-data-" in response.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(response.data), read_only=True)
    assert book.sheetnames == [s["title"] for s in doc["sections"]]
    for section in doc["sections"]:
        rows = [list(r) for r in book[section["title"]].iter_rows(values_only=True)]
        width = len(section["columns"])
        rows = [(r + [None] * width)[:width] for r in rows]

        def expected(v):
            if v is None or v == "":
                return None
            return v if isinstance(v, (int, float)) else neutralize(v)

        assert rows[0] == section["columns"]
        assert rows[1:] == [[expected(v) for v in row] for row in section["rows"]], section["key"]


def test_staff_export_is_scoped_and_audited(demo):
    with demo.app_context():
        users = _users()
        pid, admin_id = users[PERSON].id, users["admin"].id
        county = db.session.get(type(users["staff1"].org_unit), users["staff1"].org_unit_id)
        other_county = make_org("county", "外县", county.parent)
        make_user("far-staff", "county_staff", other_county)
        db.session.commit()
    staff = demo.test_client()
    login(staff, "staff1")
    page = staff.get(f"/admin/users/{pid}/data")
    assert page.status_code == 200
    with demo.app_context():
        before = db.session.scalar(select(db.func.count()).select_from(AuditLog))
    assert "个人信息" in page.get_data(as_text=True)
    assert f'href="/admin/users/{pid}/data"' in staff.get(f"/admin/users/{pid}").get_data(as_text=True)
    for fmt in ("json", "xlsx"):
        response = staff.post(f"/admin/users/{pid}/data", data={"fmt": fmt})
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    exported = json.loads(staff.post(f"/admin/users/{pid}/data", data={"fmt": "json"}).data)
    assert exported["person"]["username"] == PERSON
    assert staff.post(f"/admin/users/{pid}/data", data={"fmt": "pdf"}).status_code == 400
    with demo.app_context():
        entries = db.session.scalars(select(AuditLog).where(AuditLog.action == "user.data_export")
                                     .order_by(AuditLog.id)).all()
        assert len(entries) == 3 and before == db.session.scalar(
            select(db.func.count()).select_from(AuditLog)) - 3
        assert {e.details["format"] for e in entries} == {"json", "xlsx"}
        staff1 = _users()["staff1"]
        assert all(e.actor_id == staff1.id and e.target_type == "user" and e.target_id == pid
                   for e in entries)
        assert "core.profile" in entries[0].details["sections"]
    # The person sees the exports of their data in their own export.
    _client, _text, doc = _own_json(demo)
    exports = [r for r in _section(doc, "core.audit")["rows"] if r[1] == "user.data_export"]
    assert len(exports) == 3 and exports[0][3] == staff1.name
    # A township secretary, another county's staff, and county staff on an admin: refused.
    secretary = demo.test_client()
    login(secretary, "t1-sec")
    assert secretary.get(f"/admin/users/{pid}/data").status_code == 403
    assert secretary.post(f"/admin/users/{pid}/data", data={"fmt": "json"}).status_code == 403
    far = demo.test_client()
    login(far, "far-staff")
    assert far.get(f"/admin/users/{pid}/data").status_code == 404
    assert far.post(f"/admin/users/{pid}/data", data={"fmt": "json"}).status_code == 404
    assert staff.get(f"/admin/users/{admin_id}/data").status_code == 404
    admin = demo.test_client()
    login(admin, "admin")
    assert admin.post(f"/admin/users/{pid}/data", data={"fmt": "json"}).status_code == 200
    with demo.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(AuditLog)
                                 .where(AuditLog.action == "user.data_export")) == 4
    # Signed out: the own export asks to sign in.
    anonymous = demo.test_client()
    assert anonymous.get("/account/data.json").status_code == 302


def test_english_export_and_page(demo):
    from .test_i18n import CJK, chinese_outside_content, content_texts

    client, _text, doc = _own_json(demo, lang="en")
    for section in doc["sections"]:
        assert not CJK.search(section["title"]), section["title"]
        assert not [c for c in section["columns"] if CJK.search(c)], section["key"]
    profile = dict(_section(doc, "core.profile")["rows"])
    assert profile["Username"] == PERSON and profile["Account active"] == "Yes"
    assert _section(doc, "attendance.leave")["rows"][0][4] == "Approved"
    page = client.get("/account/data").get_data(as_text=True)
    assert '<html lang="en"' in page
    assert not chinese_outside_content(page, content_texts(demo))


def test_csrf_is_required_for_the_staff_export(tmp_path):
    from kb import create_app, dbmigrate

    app = create_app(make_config(tmp_path, WTF_CSRF_ENABLED=True))
    with app.app_context():
        dbmigrate.upgrade(app)
        county = make_org("county", "甲县")
        town = make_org("township", "甲镇", county)
        make_user("staff", "county_staff", county)
        pid = make_user("someone", "deputy", town).id
        db.session.commit()
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    client.post("/login", data={"login": "staff", "password": "pw", "csrf_token": token})
    assert client.post(f"/admin/users/{pid}/data", data={"fmt": "json"}).status_code == 400
    page = client.get(f"/admin/users/{pid}/data").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(f"/admin/users/{pid}/data", data={"fmt": "json", "csrf_token": token})
    assert response.status_code == 200 and json.loads(response.data)["person"]["username"] == "someone"


# -- the hook's contract --------------------------------------------------------------------

def _owner(table: str) -> str:
    for name, _module in BUILTIN_PLUGINS:
        prefix = "quiz_" if name == "quizzes" else f"{name}_"
        if table.startswith(prefix):
            return name
    return CORE_PLUGIN_NAME


def test_every_table_with_a_user_id_is_covered_by_its_plugin(app):
    """A new plugin table holding people's rows must be added to that plugin's export."""
    with app.test_request_context():
        user = make_user("someone", "deputy", None)
        covered: dict[str, set[str]] = {}
        for plugin, result in call_each(app.extensions["kb.pm"], "kb_personal_data", user=user):
            for section in result:
                covered.setdefault(plugin, set()).update(section.tables)
                assert section.key.split(".")[0] == plugin, f"{section.key} from {plugin}"
        db.session.rollback()
    tables = db.metadata.tables
    named = set().union(*covered.values())
    assert not named - set(tables), f"sections name unknown tables: {named - set(tables)}"
    with_user = sorted(t for t, table in tables.items() if "user_id" in table.c)
    assert len(with_user) >= 10
    missing = [t for t in with_user if t not in covered.get(_owner(t), set())]
    assert not missing, f"tables with user_id that no kb_personal_data section of their plugin covers: {missing}"
    assert set(covered) == {CORE_PLUGIN_NAME, *(n for n, _m in BUILTIN_PLUGINS)}


class RowPlugin:
    def __init__(self, rows, key="bad.section"):
        self.rows, self.key = rows, key

    @hookimpl
    def kb_personal_data(self, user):
        return [PersonalSection(key=self.key, title="坏", columns=("a", "b"), rows=self.rows)]


@pytest.mark.parametrize(("plugin", "message"), [
    (RowPlugin(((1,),)), "has 1 values for 2 columns"),
    (RowPlugin((), key="core.profile"), "'core.profile' registered by both 'bad' and 'core'"),
])
def test_bad_sections_are_refused_naming_the_plugin(tmp_path, plugin, message):
    from kb import create_app, dbmigrate

    app = create_app(make_config(tmp_path, TEST_PLUGINS=[("bad", plugin)]))
    with app.app_context():
        dbmigrate.upgrade(app)
        make_user("someone", "deputy", None)
        db.session.commit()
    client = app.test_client()
    login(client, "someone")
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(PluginError, match=message):
        client.get("/account/data.json")
