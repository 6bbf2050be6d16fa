"""Lesson pages served from the per-worker shell cache (kb.fragments): every per-person value is
filled per request, and a role change, deactivation, language switch, lesson edit or plugin
data change shows at once."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from kb import get_catalog
from kb.cli import run_sync
from kb.extensions import db
from kb.fragments import Shell, hole
from kb.models import User, utcnow

from .conftest import make_config
from .conftest import make_org as org
from .conftest import make_user as person
from .quizzes_support import write_quiz

URL = "/courses/basics/status"


@pytest.fixture
def lapp(db_app):
    write_quiz(db_app)
    run_sync(db_app)
    with db_app.app_context():
        province = org("province", "省")
        ca, cb = org("county", "甲县", province), org("county", "乙县", province)
        a1, b1 = org("township", "甲一镇", ca), org("township", "乙一镇", cb)
        people = {"d1": person("d1", "deputy", a1, name="代表<b>甲</b>"),
                  "d2": person("d2", "deputy", a1, name="代表乙"),
                  "b1d": person("b1d", "deputy", b1, name="外县代表"),
                  "staff": person("staff", "county_staff", ca, name="县干部")}
        db.session.commit()
        db_app.config["IDS"] = {k: u.id for k, u in people.items()} | {"ca": ca.id, "cb": cb.id}
    return db_app


def login(app, username):
    client = app.test_client()
    assert client.post("/login", data={"login": username, "password": "pw"}).status_code == 302
    return client


def page(client, url=URL):
    response = client.get(url)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def progress_row(app, user_id, seconds, scroll=0.25, completed=False):
    from kb.plugins.progress.models import LessonProgress

    with app.app_context():
        view = get_catalog().lesson("basics", "status")
        row = db.session.scalar(select(LessonProgress).where(
            LessonProgress.user_id == user_id, LessonProgress.lesson_id == view.id))
        if row is None:
            row = LessonProgress(user_id=user_id, lesson_id=view.id, course_slug="basics",
                                 lesson_slug="status")
            db.session.add(row)
        row.seconds, row.max_scroll, row.last_scroll = seconds, scroll, scroll
        row.completed_at = utcnow() if completed else None
        db.session.commit()


def set_user(app, user_id, **values):
    with app.app_context():
        user = db.session.get(User, user_id)
        for k, v in values.items():
            setattr(user, k, v)
        db.session.commit()


def test_shell_fill_escapes_values_and_keeps_markup():
    shell = Shell(f"<p>{hole('name')}</p><i>{hole('html')}</i>{hole('name')}")
    assert shell.holes == {"name", "html"}
    calls = []
    out = shell.fill({"name": lambda: calls.append(1) or "<b>&", "html": hole("x").__class__("<br>")})
    assert out == "<p>&lt;b&gt;&amp;</p><i><br></i>&lt;b&gt;&amp;" and calls == [1]


def test_one_shell_for_two_people_each_with_their_own_name_and_panel(lapp):
    ids = lapp.config["IDS"]
    progress_row(lapp, ids["d1"], seconds=600)
    one, two = login(lapp, "d1"), login(lapp, "d2")
    first = page(one)
    assert "代表&lt;b&gt;甲&lt;/b&gt;" in first and "代表<b>甲</b>" not in first
    assert "已学习约 10 分钟" in first
    second = page(two)
    assert "代表乙" in second and "代表&lt;b&gt;甲" not in second
    assert "已学习约 0 分钟" in second and "已学习约 10 分钟" not in second
    assert "代表乙" not in page(one)
    shells = lapp.extensions["kb.lesson_pages"]
    assert len(shells) == 1  # both pages came from one cached shell
    # The shell itself holds nobody's name, token or panel.
    (shell,) = shells._parts.values()
    literal = "".join(shell.parts[0::2])
    assert "代表乙" not in literal and "甲</b>" not in literal and "已学习约" not in literal
    assert {"name", "csrf", "panels", "article", "pager"} <= shell.holes


def test_progress_panel_follows_the_row(lapp):
    ids = lapp.config["IDS"]
    client = login(lapp, "d1")
    assert "已学习约 0 分钟" in page(client)
    progress_row(lapp, ids["d1"], seconds=300)
    assert "已学习约 5 分钟" in page(client)
    progress_row(lapp, ids["d1"], seconds=1200, completed=True)
    done = page(client)
    assert "本课已学完" in done and "已学完（" in done and "学完了</button>" not in done


def test_anonymous_page_has_no_person_and_no_token(lapp):
    login(lapp, "d1").get(URL)
    anonymous = page(lapp.test_client())
    assert "代表" not in anonymous.split("<main")[0] and "退出" not in anonymous
    assert 'name="csrf_token"' not in anonymous and "学习进度" not in anonymous
    assert "kbhole" not in anonymous


def test_role_change_and_deactivation_take_effect_at_once(lapp):
    ids = lapp.config["IDS"]
    client = login(lapp, "d2")
    before = page(client)
    assert "学习报表" not in before and 'href="/admin/users"' not in before
    set_user(lapp, ids["d2"], role="chair")
    assert "学习报表" in page(client)
    set_user(lapp, ids["d2"], role="county_staff")
    assert 'href="/admin/users"' in page(client)
    set_user(lapp, ids["d2"], role="deputy")
    assert 'href="/admin/users"' not in page(client) and "学习报表" not in page(client)
    set_user(lapp, ids["d2"], active=False)
    gone = page(client)
    assert "代表乙" not in gone and "退出" not in gone and "学习进度" not in gone
    assert 'href="/login?next=' in gone


def test_language_switch_changes_the_whole_page(lapp):
    client = login(lapp, "d1")
    zh = page(client)
    assert '<html lang="zh-CN"' in zh and "学习进度" in zh
    client.get("/prefs?lang=en&next=/", headers={"Sec-Fetch-Site": "same-origin"})
    en = page(client)
    assert '<html lang="en"' in en and "学习进度" not in en and "本课程测验" not in en
    assert "代表&lt;b&gt;甲&lt;/b&gt;" in en  # the name is content, in any language
    client.get("/prefs?lang=zh_CN&next=/", headers={"Sec-Fetch-Site": "same-origin"})
    assert '<html lang="zh-CN"' in page(client)


def test_lesson_edit_synced_shows_to_signed_in_and_anonymous_readers(lapp):
    client, anonymous = login(lapp, "d1"), lapp.test_client()
    assert "新加的一句话" not in page(client) and "新加的一句话" not in page(anonymous)
    path = Path(lapp.config["COURSES_DIR"]) / "basics" / "01-status.md"
    path.write_text(path.read_text(encoding="utf-8") + "\n\n新加的一句话。\n", encoding="utf-8")
    run_sync(lapp)
    assert "新加的一句话" in page(client) and "新加的一句话" in page(anonymous)
    assert "代表&lt;b&gt;甲&lt;/b&gt;" in page(client)


def _submitted(app, username, score, number=1, passed=None):
    from kb.plugins.quizzes.models import Attempt, Quiz

    with app.app_context():
        quiz = db.session.scalar(select(Quiz).where(Quiz.slug == "basics-quiz"))
        user = db.session.scalar(select(User).where(User.username == username))
        db.session.add(Attempt(quiz_id=quiz.id, user_id=user.id, number=number, status="submitted",
                               started_at=utcnow() - timedelta(minutes=5), submitted_at=utcnow(),
                               score=score, passed=score >= 60 if passed is None else passed,
                               question_ids=[]))
        db.session.commit()


def _quiz_panel(html):
    m = re.search(r'<ul class="quiz-panel">(.*?)</ul>', html, re.S)
    return m.group(1) if m else ""


def test_quiz_panel_shows_each_persons_own_result(lapp):
    _submitted(lapp, "d1", 40.0, number=1)
    _submitted(lapp, "d1", 90.0, number=2)
    _submitted(lapp, "d1", 70.0, number=3)
    one, two = login(lapp, "d1"), login(lapp, "d2")
    mine = _quiz_panel(page(one))
    assert 'href="/quizzes/basics-quiz"' in mine and "成绩 90.0" in mine and "已通过" in mine
    other = _quiz_panel(page(two))
    assert 'href="/quizzes/basics-quiz"' in other and "成绩" not in other
    _submitted(lapp, "d2", 50.0)
    assert "成绩 50.0" in _quiz_panel(page(two)) and "已通过" not in _quiz_panel(page(two))
    assert "成绩 90.0" in _quiz_panel(page(one))
    from kb.plugins.quizzes.models import Quiz

    with lapp.app_context():  # grading "last": the newest attempt counts
        db.session.scalar(select(Quiz).where(Quiz.slug == "basics-quiz")).grading = "last"
        db.session.commit()
    assert "成绩 70.0" in _quiz_panel(page(one))


def test_quiz_panel_keeps_the_county_rule(lapp):
    from kb.plugins.quizzes.models import Quiz

    ids = lapp.config["IDS"]
    with lapp.app_context():
        for slug, county in (("bank-a", ids["ca"]), ("bank-b", ids["cb"])):
            db.session.add(Quiz(slug=slug, title=f"题库{slug}", course_slug="basics", origin="import",
                                org_unit_id=county))
        db.session.commit()
    a = _quiz_panel(page(login(lapp, "d1")))
    assert "/quizzes/bank-a" in a and "/quizzes/bank-b" not in a
    b = _quiz_panel(page(login(lapp, "b1d")))
    assert "/quizzes/bank-b" in b and "/quizzes/bank-a" not in b
    with lapp.app_context():
        db.session.scalar(select(Quiz).where(Quiz.slug == "bank-a")).is_active = False
        db.session.commit()
    assert "/quizzes/bank-a" not in _quiz_panel(page(login(lapp, "d1")))


def test_flashed_messages_are_shown_once_on_a_lesson_page(lapp):
    client = login(lapp, "d1")
    with client.session_transaction() as s:
        s["_flashes"] = [("info", "一条提示")]
    assert "一条提示" in page(client)
    assert "一条提示" not in page(client)


def test_csrf_token_is_the_sessions_own(tmp_path):
    from kb import create_app, dbmigrate

    app = create_app(make_config(tmp_path, WTF_CSRF_ENABLED=True))
    with app.app_context():
        dbmigrate.upgrade(app)
    run_sync(app)
    with app.app_context():
        person("d1", "deputy", None)
        person("d2", "deputy", None)
        db.session.commit()

    def signed_in(username):
        client = app.test_client()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page(client, "/login")).group(1)
        assert client.post("/login", data={"csrf_token": token, "login": username,
                                           "password": "pw"}).status_code == 302
        return client

    def tokens(html):
        return set(re.findall(r'name="csrf_token" value="([^"]+)"', html)) | set(
            re.findall(r'data-csrf="([^"]+)"', html))

    one, two = signed_in("d1"), signed_in("d2")
    t1, t2 = tokens(page(one)), tokens(page(two))
    assert t1 and t2 and not t1 & t2
    # The other person's token is refused; one's own works (logout form of the cached shell).
    assert one.post("/logout", data={"csrf_token": next(iter(t2))}).status_code == 400
    assert one.post("/logout", data={"csrf_token": next(iter(t1))}).status_code == 302
    with app.app_context():
        db.engine.dispose()
