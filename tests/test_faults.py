"""Faults: the database going away under load, a busy SQLite file.

PostgreSQL restarted during load: ``kb serve`` (gunicorn, as in production) against a private
cluster of our own (never the shared server), writes from several people at once, the cluster
stopped (immediate: a crash) and started again in the middle. Afterwards every write answered
2xx/3xx is in the database, every failure was a 503 (never a 500), and writes succeed again
within a few seconds without restarting the app.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from .conftest import make_config
from .faults_support import Browser, PrivateCluster, Server, private_cluster_unavailable

PASSWORD = "fault-pw"
QUIZ = """\
title: 故障测验
course: basics
pass_score: 0
questions:
  - id: f1
    type: truefalse
    stem: 乡镇人大设常委会。
    answer: 错
    explanation: 乡镇人大不设常委会。
    lesson: basics/status
  - id: f2
    type: single
    stem: 乡镇人大每届任期几年？
    options: {A: 三年, B: 五年}
    answer: B
    explanation: 每届任期五年。
    lesson: basics/status
"""
PEOPLE = 6
SESSIONS = 40  # one check-in per person and session


@pytest.fixture(scope="module")
def cluster():
    reason = private_cluster_unavailable()
    if reason:
        pytest.skip(reason)
    c = PrivateCluster()
    yield c
    c.destroy()


def _seed(config) -> dict:
    """Schema, the fixture courses, a quiz, PEOPLE deputies enrolled in SESSIONS open sessions."""
    from werkzeug.security import generate_password_hash

    from kb import create_app, dbmigrate
    from kb.cli import run_sync
    from kb.extensions import db
    from kb.models import User, add_org_unit, utcnow
    from kb.plugins.attendance.models import Enrolment, TrainingClass, TrainingSession

    app = create_app(config)
    with app.app_context():
        dbmigrate.upgrade(app)
    Path(config["QUIZZES_DIR"], "fault.yaml").write_text(QUIZ, encoding="utf-8")
    run_sync(app)

    with app.app_context():
        county = add_org_unit("county", "故障县", None, None)
        town = add_org_unit("township", "故障镇", county, None)
        digest = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
        users = []
        for i in range(PEOPLE):
            u = User(username=f"f{i}", name=f"代表{i}", role="deputy", org_unit=town,
                     password_hash=digest)
            db.session.add(u)
            users.append(u)
        klass = TrainingClass(title="故障演练班", org_unit_id=county.id)
        db.session.add(klass)
        db.session.flush()
        now = utcnow()
        sessions = []
        for n in range(SESSIONS):
            s = TrainingSession(class_id=klass.id, title=f"第{n}讲", starts_at=now,
                                ends_at=now + timedelta(hours=2), place="党校", hours=1.0)
            db.session.add(s)
            sessions.append(s)
        db.session.flush()
        for u in users:
            db.session.add(Enrolment(class_id=klass.id, user_id=u.id))
        db.session.commit()
        from kb.plugins.attendance import service as attendance

        world = {
            "users": {u.username: u.id for u in users},
            "sessions": [s.id for s in sessions],
            "passes": {s.id: attendance.make_pass(s.id) for s in sessions},
            "lesson": app.extensions["kb.catalog"].get().lesson("basics", "status").id,
        }
        db.engine.dispose()
    return world


def _env(config) -> dict:
    return {
        "KB_SECRET_KEY": config["SECRET_KEY"],
        "KB_INSTANCE_DIR": config["INSTANCE_DIR"],
        "KB_DATABASE_URL": config["DATABASE_URL"],
        "KB_COURSES_DIR": config["COURSES_DIR"],
        "KB_QUIZZES_DIR": config["QUIZZES_DIR"],
        "KB_INDEX_DIR": config["INDEX_DIR"],
        "KB_PLUGINS": "quizzes,attendance,progress",
    }


class Journal:
    """What every request asked for and what it was answered."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries: list[dict] = []

    def add(self, **entry):
        entry["t"] = time.monotonic()
        with self.lock:
            self.entries.append(entry)


def _person_load(browser: Browser, username: str, world: dict, journal: Journal,
                 stop: threading.Event) -> None:
    """Heartbeats, check-ins, quiz submissions and claims, round and round until ``stop``."""
    sessions = list(world["sessions"])
    n = 0
    while not stop.is_set():
        n += 1
        kind = ("beat", "checkin", "quiz", "beat", "claim")[n % 5]
        try:
            if kind == "beat":
                r = browser.request("/progress/beat", json_body={"lesson_id": world["lesson"],
                                                                 "scroll": 0.5, "at": 0.5})
                seconds = r.json().get("seconds") if r.status == 200 else None
                journal.add(kind=kind, user=username, status=r.status, seconds=seconds,
                            body=r.text[:300], ctype=r.headers.get("Content-Type", ""),
                            retry=r.headers.get("Retry-After"))
            elif kind == "checkin" and sessions:
                sid = sessions[0]
                r = browser.request(f"/attendance/c/{sid}",
                                    {"csrf_token": browser.csrf, "p": world["passes"][sid]})
                if r.status == 200:
                    sessions.pop(0)
                journal.add(kind=kind, user=username, status=r.status, session=sid,
                            body=r.text[:300], retry=r.headers.get("Retry-After"))
            elif kind == "quiz":
                r = browser.request("/quizzes/fault/start", {"csrf_token": browser.csrf})
                attempt = None
                if r.status == 302 and "/attempt/" in r.headers.get("Location", ""):
                    attempt = int(re.search(r"/attempt/(\d+)", r.headers["Location"]).group(1))
                    journal.add(kind="quiz-start", user=username, status=r.status,
                                attempt=attempt, body="", retry=None)
                    r = browser.request(f"/quizzes/attempt/{attempt}/submit",
                                        {"csrf_token": browser.csrf})
                journal.add(kind=kind, user=username, status=r.status, attempt=attempt,
                            location=r.headers.get("Location", ""), body=r.text[:300],
                            retry=r.headers.get("Retry-After"))
            elif kind == "claim":
                title = f"{username}-申报-{n}"
                r = browser.request("/progress/claims/new", {
                    "csrf_token": browser.csrf, "title": title,
                    "held_on": date.today().isoformat(), "hours": "1.5", "note": "故障演练"})
                journal.add(kind=kind, user=username, status=r.status, title=title,
                            body=r.text[:300], retry=r.headers.get("Retry-After"))
        except OSError as exc:  # the connection itself failed (should not happen: gunicorn is up)
            journal.add(kind=kind, user=username, status=-1, body=repr(exc), retry=None)


def test_postgresql_restart_under_load_loses_no_acknowledged_write(cluster, tmp_path):
    from kb import create_app
    from kb.extensions import db
    from kb.plugins.attendance.models import Record
    from kb.plugins.progress.models import Claim, LedgerEntry, LessonProgress
    from kb.plugins.quizzes.models import Attempt

    config = make_config(tmp_path, DATABASE_URL=cluster.url)
    server = Server(_env(config), workers=2)  # starts while the database is being filled
    journal = Journal()
    stop = threading.Event()
    outages = []
    try:
        world = _seed(config)
        server.wait_up()
        browsers = {}
        for name in world["users"]:
            b = Browser(server.base)
            b.login(name, PASSWORD)
            browsers[name] = b
        threads = [threading.Thread(target=_person_load, args=(b, name, world, journal, stop))
                   for name, b in browsers.items()]
        for t in threads:
            t.start()
        time.sleep(1.0)
        # A crash: every connection is cut, work in flight aborted; then no server at all.
        down_at = time.monotonic()
        cluster.stop("immediate")
        time.sleep(0.8)
        cluster.start()
        outages.append((down_at, time.monotonic()))
        time.sleep(2.5)
        # An operator's restart (fast: sessions are disconnected, then the server comes back).
        down_at = time.monotonic()
        cluster.restart("fast")
        outages.append((down_at, time.monotonic()))
        time.sleep(2.5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        healthz = Browser(server.base).request("/healthz")
    finally:
        stop.set()
        server.stop()
    log = server.output()
    entries = journal.entries
    assert entries, "no requests were made"
    statuses = {e["status"] for e in entries}
    failures = [e for e in entries if e["status"] >= 400 or e["status"] < 0]
    # Every failure is a plain 503 with Retry-After: never a 500, a stack trace or a reset.
    wrong = [e for e in failures if e["status"] != 503 or not e["retry"]
             or "Traceback" in e["body"]]
    assert not wrong, (wrong[:5], log[-3000:])
    assert failures, f"the restart caused no failure at all ({statuses}): the test is not testing"
    beats_503 = [e for e in failures if e["kind"] == "beat"]
    assert all(e["ctype"].startswith("application/json") for e in beats_503), beats_503[:3]
    assert "Traceback" not in log, log[-3000:]
    # Recovery by itself: after each outage, every kind of write succeeds again within a few
    # seconds and the failures stop.
    # What happened, for the record (pytest -s shows it; docs/deploy.md quotes a run).
    from collections import Counter

    ends = [down for down, _up in outages[1:]] + [float("inf")]
    print("requests:", dict(Counter((e["kind"], e["status"]) for e in entries)))
    for (down_at, up_at), next_down in zip(outages, ends, strict=True):
        first_ok = {kind: round(min((e["t"] for e in entries if e["kind"] == kind
                                     and e["t"] > up_at and 200 <= e["status"] < 400),
                                    default=float("nan")) - up_at, 2)
                    for kind in ("beat", "claim", "quiz", "checkin")}
        last_failure = max((e["t"] - up_at for e in entries if e["status"] >= 400
                            and down_at <= e["t"] < next_down), default=float("nan"))
        print(f"outage {up_at - down_at:.2f} s; first success after it, s: {first_ok}; "
              f"last failure {last_failure:+.2f} s from the database being back")
    for (down_at, up_at), next_down in zip(outages, ends, strict=True):
        during = [e for e in entries if down_at <= e["t"] <= up_at + 0.5]
        assert during, "no request was made during the outage"
        for kind in ("beat", "claim", "quiz", "checkin"):
            ok_after = [e["t"] for e in entries if e["kind"] == kind and e["t"] > up_at
                        and 200 <= e["status"] < 400]
            assert ok_after, f"no {kind} succeeded after the restart"
            assert min(ok_after) - up_at < 5.0, (kind, min(ok_after) - up_at)
        late = [e for e in entries if up_at + 2.0 < e["t"] < next_down and e["status"] >= 400]
        assert not late, ("failures went on for more than 2 s after the database was back", late)
    assert any(e["t"] < outages[0][0] and e["status"] < 400 for e in entries)
    assert healthz.status == 200, healthz.text

    # No acknowledged write was lost.
    app = create_app(config)
    with app.app_context():
        users = world["users"]
        claims = set(db.session.scalars(select(Claim.title)))
        for e in entries:
            if e["kind"] == "claim" and e["status"] == 302:
                assert e["title"] in claims, e
        submitted = {a.id: a for a in db.session.scalars(select(Attempt))}
        for e in entries:
            if e["kind"] == "quiz" and e["status"] == 302 and e["attempt"]:
                assert "/result" in e["location"], e
                assert submitted[e["attempt"]].status == "submitted", e
            if e["kind"] == "quiz-start":
                assert e["attempt"] in submitted, e
        ledger = set(db.session.scalars(select(LedgerEntry.event_key)))
        for e in entries:  # pass_score 0: every graded attempt passes and credits 学时
            if e["kind"] == "quiz" and e["status"] == 302 and e["attempt"]:
                assert f"quiz:fault:{users[e['user']]}" in ledger, e
        records = {(r.session_id, r.user_id) for r in db.session.scalars(select(Record))}
        for e in entries:
            if e["kind"] == "checkin" and e["status"] == 200:
                assert (e["session"], users[e["user"]]) in records, e
                # the 学时 credited for it too (an AttendanceMarked event, same request)
                assert f"attendance:{e['session']}:{users[e['user']]}" in ledger, e
        rows = {r.user_id: r.seconds for r in db.session.scalars(select(LessonProgress))}
        for e in entries:
            if e["kind"] == "beat" and e["status"] == 200:
                assert rows[users[e["user"]]] >= e["seconds"], e
        db.engine.dispose()


# -- SQLite: a locked database file --------------------------------------------------------------

def test_sqlite_locked_by_another_writer_is_a_503_with_retry_after(tmp_path):
    """While another process holds the write lock longer than the busy timeout, writes get
    503 + Retry-After (JSON for the page scripts), reads go on (WAL), and it all works again
    as soon as the lock is released."""
    import sqlite3

    from kb import create_app, dbmigrate
    from kb.cli import run_sync
    from kb.extensions import db
    from kb.models import add_org_unit

    from .conftest import login, make_user

    database = tmp_path / "kb.sqlite3"
    app = create_app(make_config(tmp_path, SQLALCHEMY_ENGINE_OPTIONS={
        "connect_args": {"timeout": 0.2}}))
    with app.app_context():
        dbmigrate.upgrade(app)
    run_sync(app)
    with app.app_context():
        make_user("dep", "deputy", add_org_unit("township", "锁镇"))
        db.session.commit()
        lesson = app.extensions["kb.catalog"].get().lesson("basics", "status").id
    client = app.test_client()
    login(client, "dep")
    claim = {"title": "锁住时的申报", "held_on": date.today().isoformat(), "hours": "1"}

    other = sqlite3.connect(database, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # another process is writing, and takes its time
    try:
        beat = client.post("/progress/beat", json={"lesson_id": lesson, "scroll": 0.3})
        assert beat.status_code == 503 and beat.headers["Retry-After"] == "5"
        assert beat.is_json and beat.get_json()["status"] == 503
        form = client.post("/progress/claims/new", data=claim)
        assert form.status_code == 503 and form.headers["Retry-After"] == "5"
        assert "服务暂时不可用" in form.get_data(as_text=True)
        assert client.get("/courses/basics/status").status_code == 200  # readers carry on
        assert client.get("/progress/").status_code == 200
    finally:
        other.rollback()
        other.close()
    assert client.post("/progress/beat", json={"lesson_id": lesson, "scroll": 0.3}).status_code == 200
    assert client.post("/progress/claims/new", data=claim).status_code == 302
    with app.app_context():
        from kb.plugins.progress.models import Claim

        assert db.session.scalar(select(Claim.title)) == "锁住时的申报"
        db.engine.dispose()


def test_a_connection_that_cannot_even_roll_back_still_ends_in_a_503(synced_app, monkeypatch):
    """After a crash the rollback at the end of the request fails too: the session is
    dropped (its connection invalidated), the answer is the 503 page, not a bare 500."""
    import sqlite3

    from sqlalchemy import text
    from sqlalchemy.engine.default import DefaultDialect
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from .conftest import login, make_user

    with synced_app.app_context():
        from kb.extensions import db
        from kb.models import add_org_unit

        make_user("dep", "deputy", add_org_unit("township", "断线镇"))
        db.session.commit()
    client = synced_app.test_client()
    login(client, "dep")

    def query_then_lose_the_connection(session, *args, **kwargs):
        session.execute(text("SELECT 1"))  # a transaction is open on the connection
        raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))

    def rollback_fails(self, dbapi_connection):
        raise sqlite3.OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch:
        patch.setattr(Session, "get", query_then_lose_the_connection)  # the user loader
        patch.setattr(DefaultDialect, "do_rollback", rollback_fails)
        response = client.get("/progress/")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "Traceback" not in response.get_data(as_text=True)
    assert client.get("/progress/").status_code == 200  # the next request connects afresh


def test_the_end_of_a_request_never_raises_on_a_dead_connection(app, monkeypatch):
    """Whatever left a transaction open on a connection that died (a query in an after-request
    hook, an error a view swallowed), closing the session at teardown does not raise."""
    import sqlite3

    from sqlalchemy import text
    from sqlalchemy.engine.default import DefaultDialect

    from kb.extensions import db

    def rollback_fails(self, dbapi_connection):
        raise sqlite3.OperationalError("server closed the connection unexpectedly")

    with app.test_request_context("/"):
        db.session.execute(text("SELECT 1"))
        monkeypatch.setattr(DefaultDialect, "do_rollback", rollback_fails)
    monkeypatch.undo()
    with app.app_context():
        assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_a_signed_in_person_gets_the_503_page_when_the_database_is_gone(synced_app, monkeypatch):
    """The error page itself needs the database for a signed-in person (their account, the
    nav): it is shown as to a signed-out visitor instead of as plain text."""
    import sqlite3

    from sqlalchemy.engine.default import DefaultDialect

    from .conftest import login, make_user

    with synced_app.app_context():
        from kb.extensions import db
        from kb.models import add_org_unit

        make_user("dep503", "deputy", add_org_unit("township", "停电镇"))
        db.session.commit()
    client = synced_app.test_client()
    login(client, "dep503")

    def gone(self, cursor, statement, parameters, context=None):
        raise sqlite3.OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch:
        patch.setattr(DefaultDialect, "do_execute", gone)
        patch.setattr(DefaultDialect, "do_execute_no_params", gone)
        response = client.get("/progress/")
    body = response.get_data(as_text=True)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.mimetype == "text/html" and "<html" in body and "Traceback" not in body
    assert "dep503" not in body  # shown as to a signed-out visitor
    assert client.get("/progress/").status_code == 200  # signed in again once it is back
