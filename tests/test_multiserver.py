"""Several app servers for real: ``kb serve`` (gunicorn) twice on free ports, each with its own
folder and search index, the same ``KB_SECRET_KEY`` and one PostgreSQL database (a fresh schema,
dropped afterwards), in production mode with CSRF on. Quizzes, check-ins and heartbeats driven
through both give the same results as through one; sessions, CSRF tokens and login lockouts
carry across; a lesson edited and synced on each server reaches both indexes. With Redis (at
``KB_TEST_REDIS_URL``) the servers keep their rate limits there, as a province would; without
it in the database (tests/test_ratelimit.py tests both stores).

Select with ``pytest -m multiserver``.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from .conftest import FIXTURES, PG_URL, pg_available
from .multiserver_support import Browser, make_server
from .quizzes_support import QUIZ_YAML
from .test_ratelimit import REDIS_URL, redis_available

# One cluster for the module: under pytest-xdist all its tests go to one worker (--dist
# loadgroup, set in the Makefile), not a cluster per worker.
pytestmark = [pytest.mark.multiserver, pytest.mark.postgres, pytest.mark.xdist_group("multiserver")]

PASSWORD = "multi-server-pw"
SECRET = "multi-server-test-secret-" + "x" * 32
# The quiz of tests/quizzes_support.py, answered right.
RIGHT = {"q-single": ["C"], "q-multi": ["A", "B"], "q-tf": ["错"], "q-fill": ["三"]}


class Cluster:
    def __init__(self, servers, app, ids, redis_prefix=None):
        self.a, self.b = servers
        self.app, self.ids = app, ids
        self.redis_prefix = redis_prefix  # None: rate limits in the database (no Redis here)

    def signed_in(self, server, username) -> Browser:
        phone = Browser()
        assert phone.login(server, username, PASSWORD) == 302
        return phone


def _seed(app) -> dict:
    """Org units, people (cheap hashes), a running attendance session; ids by name."""
    from werkzeug.security import generate_password_hash

    from kb.extensions import db
    from kb.models import User, add_org_unit, utcnow
    from kb.plugins.attendance.models import Enrolment, TrainingClass, TrainingSession

    with app.app_context():
        county = add_org_unit("county", "多服务器县", None)
        town = add_org_unit("township", "多服务器镇", county)
        digest = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
        people = {name: User(username=name, name=name, role="deputy", org_unit=town,
                             password_hash=digest)
                  for name in ("split", "single", "locked", "cookie", "reader")}
        people["staff"] = User(username="staff", name="组织者", role="county_staff", org_unit=county,
                               password_hash=digest)
        db.session.add_all(people.values())
        klass = TrainingClass(title="多服务器培训班", org_unit_id=county.id)
        db.session.add(klass)
        db.session.flush()
        start = utcnow() - timedelta(minutes=1)
        session = TrainingSession(class_id=klass.id, starts_at=start, ends_at=start + timedelta(hours=2),
                                  place="报告厅", hours=2)
        db.session.add(session)
        db.session.flush()
        db.session.add_all([Enrolment(class_id=klass.id, user_id=u.id) for u in people.values()])
        db.session.commit()
        ids = {name: u.id for name, u in people.items()}
        ids["session"] = session.id
        return ids


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} (CI must test it)")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    import psycopg

    from kb import create_app

    root = tmp_path_factory.mktemp("multiserver")
    schema = "t_multi_" + uuid.uuid4().hex[:10]
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    db_url = f"{plain}{'&' if '?' in plain else '?'}options=-csearch_path%3D{schema}"
    common = {"KB_ENV": "production", "KB_COOKIE_SECURE": "0", "KB_SECRET_KEY": SECRET,
              "KB_DATABASE_URL": db_url, "KB_PLUGINS": "quizzes,attendance,progress",
              "KB_CATALOG_TTL": "0.5"}
    redis_prefix = None
    if redis_available():  # the province setup: rate limits in Redis when several servers run
        redis_prefix = f"kbtest:{uuid.uuid4().hex[:12]}:"
        common.update(KB_REDIS_URL=REDIS_URL, KB_REDIS_PREFIX=redis_prefix)
    elif os.environ.get("CI"):
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (CI must test it)")
    servers = [make_server(n, root / n, common, FIXTURES / "courses", QUIZ_YAML) for n in "ab"]
    app = None
    try:
        # The deploy steps of each server: sync its own index (the first one also migrates
        # the empty database), then serve.
        for server in servers:
            server.kb("sync", "-q")
        app = create_app({"DATABASE_URL": db_url, "SECRET_KEY": SECRET,
                          "INSTANCE_DIR": str(root / "setup"), "ENV": "production",
                          "COURSES_DIR": servers[0].env["KB_COURSES_DIR"],
                          "QUIZZES_DIR": servers[0].env["KB_QUIZZES_DIR"],
                          "INDEX_DIR": str(root / "setup" / "index")})
        ids = _seed(app)
        for server in servers:
            server.start(workers=2)
        for server in servers:
            server.wait_up()
        yield Cluster(servers, app, ids, redis_prefix)
    finally:
        for server in servers:
            server.stop()
        if app is not None:
            with app.app_context():
                from kb.extensions import db

                db.session.remove()
                db.engine.dispose()
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        if redis_prefix:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=redis_prefix + "*"))
            if keys:
                client.delete(*keys)
            client.close()


def _in_db(cluster, fn):
    from kb.extensions import db

    with cluster.app.app_context():
        try:
            return fn(db)
        finally:
            db.session.remove()


def test_each_server_has_its_own_gunicorn_control_socket(cluster):
    for server in (cluster.a, cluster.b):
        assert f"Control socket listening at {server.root / 'instance' / 'gunicorn.ctl'}" in server.log(tail=10**6)


def test_a_session_cookie_from_one_server_works_on_the_other(cluster):
    phone = cluster.signed_in(cluster.a, "cookie")
    only_the_session = Browser({"session": phone.cookies["session"]})
    status, _, page = only_the_session.get(cluster.b, "/progress/")
    assert status == 200 and "cookie" in page
    # A CSRF token issued by A is accepted by B (it lives in the signed session).
    token = phone.csrf(cluster.a, "/account/password")
    status, headers, _ = only_the_session.post(cluster.b, "/logout", form={"csrf_token": token})
    assert status == 302
    status, headers, _ = only_the_session.get(cluster.a, "/progress/")  # signed out on A too
    assert status == 302 and "/login" in headers["Location"]


def _question_ids(cluster) -> dict[str, int]:
    from kb.plugins.quizzes.models import Question, Quiz

    return dict(_in_db(cluster, lambda db: db.session.execute(
        select(Question.qid, Question.id).join(Quiz, Quiz.id == Question.quiz_id)
        .where(Quiz.slug == "basics-quiz")).all()))


def _take_quiz(cluster, username, servers) -> None:
    """Start on the first server, answer question i through servers[i % n], then submit on
    every server of ``servers`` at the same moment (a double submit when there are two)."""
    phone = cluster.signed_in(servers[0], username)
    token = phone.csrf(servers[0], "/quizzes/basics-quiz")
    status, headers, _ = phone.post(servers[0], "/quizzes/basics-quiz/start", form={"csrf_token": token})
    assert status == 302, status
    attempt = re.search(r"/quizzes/attempt/\d+", headers["Location"]).group(0)
    qids = _question_ids(cluster)
    for i, (external, response) in enumerate(sorted(RIGHT.items())):
        server = servers[i % len(servers)]
        status, _, body = phone.post(server, attempt + "/answer",
                                     body={"question_id": qids[external], "response": response},
                                     headers={"Accept": "application/json", "X-CSRFToken": token})
        assert status == 200, body
    barrier = threading.Barrier(len(set(servers)))

    def submit(server):
        barrier.wait()
        return phone.post(server, attempt + "/submit", form={"csrf_token": token})[0]

    unique = list(dict.fromkeys(servers))
    with ThreadPoolExecutor(len(unique)) as pool:
        assert list(pool.map(submit, unique)) == [302] * len(unique)


def test_quiz_through_both_servers_grades_once_like_one_server(cluster):
    from kb.plugins.progress.models import LedgerEntry
    from kb.plugins.quizzes.models import Answer, Attempt

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda args: _take_quiz(cluster, *args),
                      [("split", [cluster.a, cluster.b]), ("single", [cluster.a])]))

    def outcome(db, user_id):
        attempts = db.session.execute(select(Attempt.status, Attempt.score, Attempt.passed)
                                      .where(Attempt.user_id == user_id)).all()
        graded = db.session.scalar(select(func.count()).select_from(Answer).join(Attempt)
                                   .where(Attempt.user_id == user_id, Answer.credit.is_not(None)))
        hours = db.session.execute(select(LedgerEntry.source, LedgerEntry.hours)
                                   .where(LedgerEntry.user_id == user_id)).all()
        return [tuple(a) for a in attempts], graded, sorted(tuple(h) for h in hours)

    split = _in_db(cluster, lambda db: outcome(db, cluster.ids["split"]))
    single = _in_db(cluster, lambda db: outcome(db, cluster.ids["single"]))
    assert split == single
    attempts, graded, hours = split
    assert attempts == [("submitted", 100.0, True)] and graded == len(RIGHT)
    assert len(hours) == 1  # QuizPassed credited once


def _check_in(cluster, username, servers) -> list[int]:
    staff = cluster.signed_in(cluster.a, "staff")
    sid = cluster.ids["session"]
    status, _, body = staff.get(cluster.a, f"/attendance/sessions/{sid}/qr.json")
    assert status == 200, body
    import json

    url = json.loads(body)["url"]
    phone = cluster.signed_in(servers[-1], username)
    path = url.split("127.0.0.1", 1)[-1].split("/", 1)[-1]
    status, _, page = phone.get(servers[0], "/" + path)  # the scan: sets the device cookie
    assert status == 200, page[:500]
    form = {"csrf_token": re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1),
            "p": re.search(r'name="p"[^>]*value="([^"]+)"', page).group(1)}
    barrier = threading.Barrier(len(servers))

    def tap(server):
        barrier.wait()
        return phone.post(server, f"/attendance/c/{sid}", form=form)[0]

    with ThreadPoolExecutor(len(servers)) as pool:
        return list(pool.map(tap, servers))


def test_the_same_person_checking_in_through_both_servers_has_one_record(cluster):
    from kb.plugins.attendance.models import Record

    assert _check_in(cluster, "single", [cluster.a]) == [200]
    statuses = _check_in(cluster, "split", [cluster.a, cluster.b])
    assert 200 in statuses and all(s in (200, 409) for s in statuses), statuses

    def records(db, user_id):
        return db.session.execute(select(Record.status, Record.source).where(
            Record.user_id == user_id, Record.session_id == cluster.ids["session"])).all()

    split = _in_db(cluster, lambda db: records(db, cluster.ids["split"]))
    single = _in_db(cluster, lambda db: records(db, cluster.ids["single"]))
    assert len(split) == 1 and [tuple(r) for r in split] == [tuple(r) for r in single]


def _lesson(cluster) -> tuple[int, str]:
    from kb.models import Course, Lesson

    lesson_id = _in_db(cluster, lambda db: db.session.scalar(
        select(Lesson.id).join(Course).where(Course.slug == "basics", Lesson.slug == "status")))
    return lesson_id, "/courses/basics/status"


def _beat(cluster, username, servers, ticks: int, interval: float) -> int:
    """Open the lesson, then at each tick send one heartbeat through every server at the same
    moment; return the seconds the person was credited."""
    lesson_id, path = _lesson(cluster)
    phone = cluster.signed_in(servers[0], username)
    status, _, page = phone.get(servers[0], path)
    assert status == 200
    token = re.search(r'data-csrf="([^"]+)"', page).group(1)
    barrier = threading.Barrier(len(servers))
    results = []

    def beat(server):
        barrier.wait()
        status, _, body = phone.post(server, "/progress/beat", body={"lesson_id": lesson_id, "scroll": 0.3},
                                     headers={"X-CSRFToken": token})
        assert status == 200, body
        return body

    start = time.monotonic()
    with ThreadPoolExecutor(len(servers)) as pool:
        for tick in range(ticks + 1):
            delay = start + tick * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            results.extend(pool.map(beat, servers))
    from kb.plugins.progress.models import LessonProgress

    rows = _in_db(cluster, lambda db: db.session.scalars(select(LessonProgress.seconds).where(
        LessonProgress.user_id == cluster.ids[username], LessonProgress.lesson_id == lesson_id)).all())
    assert len(rows) == 1, rows  # one progress row, however many servers wrote to it
    return rows[0]


def test_heartbeats_through_both_servers_credit_like_one(cluster):
    """Both servers get each heartbeat at the same moment: the time counts once, as through one
    server (a double count would give about twice the seconds)."""
    ticks, interval = 4, 1.5
    with ThreadPoolExecutor(2) as pool:
        split, single = pool.map(lambda args: _beat(cluster, *args, ticks, interval),
                                 [("split", [cluster.a, cluster.b]), ("single", [cluster.a])])
    assert ticks - 1 <= split <= ticks + 1, split  # int(1.5 s) = 1 s credited per tick
    assert abs(split - single) <= 1, (split, single)


def test_a_login_lockout_reached_through_both_servers_holds_on_both(cluster):
    from kb.models import RateCounter

    phone = Browser()
    for server in (cluster.a, cluster.a, cluster.a, cluster.b, cluster.b):  # 3 through A, 2 through B
        assert phone.login(server, "locked", "wrong") == 200
    for server in (cluster.a, cluster.b):
        assert Browser().login(server, "locked", PASSWORD) == 429, server.name
    in_database = _in_db(cluster, lambda db: set(db.session.scalars(select(RateCounter.key))))
    if cluster.redis_prefix is None:
        assert "login-account:locked" in in_database
    else:  # counted in Redis, nothing in the database
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        assert client.get(f"{cluster.redis_prefix}ratelimit:login-account:locked") == b"5"
        client.close()
        assert "login-account:locked" not in in_database


def test_a_lesson_edited_and_synced_on_each_server_reaches_both_indexes(cluster):
    word = "跨机同步验证词" + uuid.uuid4().hex[:4]
    for server in (cluster.a, cluster.b):  # the deploy puts the new content on every server
        lesson = Path(server.env["KB_COURSES_DIR"]) / "basics" / "01-status.md"
        lesson.write_text(lesson.read_text(encoding="utf-8") + f"\n\n## 补充\n\n{word}。\n",
                          encoding="utf-8")
    first = cluster.a.kb("sync").stderr
    second = cluster.b.kb("sync").stderr
    assert "index updated: 1 lessons" in first
    assert "unchanged: course 2, lesson 4" in second and "index updated: 1 lessons" in second
    reader = cluster.signed_in(cluster.a, "reader")
    import json
    import urllib.parse

    for server in (cluster.a, cluster.b):
        status, _, body = reader.get(server, "/api/v1/search?q=" + urllib.parse.quote(word))
        assert status == 200
        assert [hit["url"].split("#")[0] for hit in json.loads(body)["results"]] == ["/courses/basics/status"], \
            (server.name, body[:300])
        deadline = time.monotonic() + 10  # workers reload the catalog within KB_CATALOG_TTL
        while True:
            status, _, page = reader.get(server, "/courses/basics/status")
            if word in page or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200 and word in page, server.name

