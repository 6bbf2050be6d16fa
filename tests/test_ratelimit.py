"""Rate limits (kb/ratelimit.py) on both stores: the database (SQLite and PostgreSQL) and Redis.

Redis is the server at ``KB_TEST_REDIS_URL`` (default 127.0.0.1:6379 db 0), shared with other
users of the machine: every test uses its own key prefix and deletes its keys afterwards. Without
Redis the Redis tests are skipped with the reason, except under CI, where they fail.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import pytest
from sqlalchemy import func, select

from kb import ratelimit
from kb.extensions import db
from kb.models import RateCounter
from kb.ratelimit import DatabaseStore, Limit, RedisStore, StoreUnavailable

from .conftest import login, make_config, make_org, make_user

REDIS_URL = os.environ.get("KB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1,
                                         socket_connect_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own in the shared Redis; its keys are deleted afterwards."""
    if not redis_available():
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL} (CI must test it)")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    import redis

    prefix = f"kbtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


def _dead_redis_url() -> str:
    """A Redis URL where nothing listens (a port we bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture(params=["database", "redis"])
def store_app(request, db_app):
    """(app, store) for each store: the database store on SQLite and PostgreSQL, and Redis."""
    if request.param == "database":
        yield db_app, DatabaseStore()
        return
    prefix = request.getfixturevalue("redis_prefix")
    yield db_app, RedisStore(REDIS_URL, prefix)


def test_hits_count_in_a_window_and_clear(store_app):
    app, store = store_app
    with app.app_context():
        assert store.peek("t:a").hits == 0
        first = store.hit("t:a", 60)
        assert first.hits == 1 and 59 <= first.reset_in <= 60
        assert store.hit("t:a", 60).hits == 2
        assert store.hit("t:a", 60, amount=3).hits == 5
        seen = store.peek("t:a")
        assert seen.hits == 5 and 0 < seen.reset_in <= 60
        assert store.peek("t:b").hits == 0  # keys are separate
        store.clear("t:a")
        assert store.peek("t:a").hits == 0
        assert store.hit("t:a", 60).hits == 1


def test_a_new_window_starts_after_the_old_one_ends(store_app):
    app, store = store_app
    with app.app_context():
        store.hit("t:w", 0.3)
        assert store.hit("t:w", 0.3).hits == 2
        time.sleep(0.45)
        assert store.peek("t:w").hits == 0
        again = store.hit("t:w", 0.3)
        assert again.hits == 1 and again.reset_in > 0.2


def test_concurrent_hits_are_never_lost(store_app):
    """8 threads (each its own connection) hit one key 25 times: 200 hits, each count once."""
    app, store = store_app
    counts, errors = [], []
    lock = threading.Lock()

    def worker():
        try:
            with app.app_context():
                mine = [store.hit("t:race", 60).hits for _ in range(25)]
            with lock:
                counts.extend(mine)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(counts) == list(range(1, 201))
    with app.app_context():
        assert store.peek("t:race").hits == 200


def test_expired_counters_are_purged_from_the_database(db_app, monkeypatch):
    monkeypatch.setattr(ratelimit.random, "random", lambda: 0.0)  # purge on every hit
    with db_app.app_context():
        store = DatabaseStore()
        store.hit("t:old", 0.1)
        store.hit("t:recent", 600)
        an_hour_on = time.time() + 3600  # every window above ended more than a minute ago
        monkeypatch.setattr(ratelimit.time, "time", lambda: an_hour_on)
        store.hit("t:new", 60)
        keys = set(db.session.scalars(select(RateCounter.key)))
    assert keys == {"t:new"}


def _app_with(tmp_path, **config):
    from kb import create_app, dbmigrate

    app = create_app(make_config(tmp_path, **config))
    with app.app_context():
        dbmigrate.upgrade(app)
        make_user("dep", "deputy", make_org("township", "甲镇"))
        db.session.commit()
    return app


def _fail_logins(client, times, name="dep"):
    for _ in range(times):
        assert client.post("/login", data={"login": name, "password": "wrong"}).status_code == 200


def test_login_lockout_counts_in_redis_when_configured(tmp_path, redis_prefix):
    import redis

    app = _app_with(tmp_path, REDIS_URL=REDIS_URL, REDIS_PREFIX=redis_prefix)
    client = app.test_client()
    _fail_logins(client, 5)
    refused = client.post("/login", data={"login": "dep", "password": "pw"})
    assert refused.status_code == 429
    assert "15 分钟后再试" in refused.get_data(as_text=True)
    keys = {k.decode() for k in redis.Redis.from_url(REDIS_URL).scan_iter(match=redis_prefix + "*")}
    assert keys == {f"{redis_prefix}ratelimit:login-account:dep",
                    f"{redis_prefix}ratelimit:login-address:127.0.0.1"}
    with app.app_context():  # nothing in the database
        assert db.session.scalar(select(func.count()).select_from(RateCounter)) == 0
    # Another client (another server, same Redis) sees the same lockout.
    twin = _app_with(tmp_path / "twin", REDIS_URL=REDIS_URL, REDIS_PREFIX=redis_prefix)
    assert twin.test_client().post("/login", data={"login": "dep", "password": "pw"}).status_code == 429


def test_two_servers_on_one_database_share_the_lockout(db_app, tmp_path):
    """The embedded store: two apps (two servers, each its own engine and pool) on one database."""
    from kb import create_app

    with db_app.app_context():
        make_user("dep", "deputy", make_org("township", "甲镇"))
        db.session.commit()
    twin = create_app(make_config(tmp_path / "twin", DATABASE_URL=db_app.config["DATABASE_URL"]))
    a, b = db_app.test_client(), twin.test_client()
    for client in (a, a, a, b, b):
        _fail_logins(client, 1)
    assert login(a, "dep").status_code == 429 and login(b, "dep").status_code == 429
    with twin.app_context():
        db.engine.dispose()


def test_success_clears_the_account_count(tmp_path, redis_prefix):
    app = _app_with(tmp_path, REDIS_URL=REDIS_URL, REDIS_PREFIX=redis_prefix)
    client = app.test_client()
    _fail_logins(client, 4)
    assert login(client, "dep").status_code == 302
    with app.app_context():
        assert ratelimit.limiter().peek(ratelimit.LOGIN_ACCOUNT, "dep").hits == 0
        assert ratelimit.limiter().peek(ratelimit.LOGIN_ADDRESS, "127.0.0.1").hits == 4


def test_redis_down_login_falls_back_to_the_database_and_logs(tmp_path, caplog):
    """Redis configured but dead: sign-in limits still hold (counted in the database), quiz
    starts are not limited, the failure is logged once, and each request stays fast."""
    app = _app_with(tmp_path, REDIS_URL=_dead_redis_url(), REDIS_PREFIX="kbtest-dead:")
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="kb.ratelimit"):
        started = time.perf_counter()
        _fail_logins(client, 5)
        assert client.post("/login", data={"login": "dep", "password": "pw"}).status_code == 429
        elapsed = time.perf_counter() - started
    errors = [r for r in caplog.records if r.name == "kb.ratelimit" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and "not answering" in errors[0].getMessage()
    assert elapsed < 5  # one connection attempt, then the database until RETRY_AFTER
    with app.app_context():
        keys = set(db.session.scalars(select(RateCounter.key)))
        assert keys == {"login-account:dep", "login-address:127.0.0.1"}
        assert all(ratelimit.take(ratelimit.QUIZ_START, 1) is None
                   for _ in range(ratelimit.QUIZ_START.allowed + 5))


def test_a_redis_that_never_answers_costs_one_timeout():
    """A Redis host that accepts connections and then says nothing (a hung server): a hit gives
    up after the 0.5 s timeout, and the request goes on with the fallback."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing is ever read or sent
        store = RedisStore(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", "kbtest-silent:")
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable):
            store.hit("t:x", 60)
        assert time.perf_counter() - started < 2 * ratelimit.REDIS_TIMEOUT + 0.5


def test_redis_is_tried_again_after_it_comes_back(tmp_path, redis_prefix, monkeypatch):
    app = _app_with(tmp_path, REDIS_URL=REDIS_URL, REDIS_PREFIX=redis_prefix)
    with app.app_context():
        limiter = ratelimit.limiter()
        real_hit = limiter.redis.hit

        def down(*args, **kwargs):
            raise StoreUnavailable("ConnectionError: refused")

        monkeypatch.setattr(limiter.redis, "hit", down)
        ratelimit.count(ratelimit.LOGIN_ACCOUNT, "dep")  # counted in the database
        assert db.session.scalar(select(func.count()).select_from(RateCounter)) == 1
        monkeypatch.setattr(limiter.redis, "hit", real_hit)
        ratelimit.count(ratelimit.LOGIN_ACCOUNT, "dep")  # still within RETRY_AFTER: database
        assert limiter.database.peek("login-account:dep").hits == 2
        monkeypatch.setattr(limiter, "_down_until", 0.0)  # RETRY_AFTER has passed
        ratelimit.count(ratelimit.LOGIN_ACCOUNT, "dep")
        assert limiter.redis.peek("login-account:dep").hits == 1
        ratelimit.forget(ratelimit.LOGIN_ACCOUNT, "dep")  # clears both stores
        assert limiter.database.peek("login-account:dep").hits == 0


def test_doctor_checks_redis_when_configured(tmp_path, redis_prefix):
    from kb.ops import doctor

    up = _app_with(tmp_path / "up", REDIS_URL=REDIS_URL, REDIS_PREFIX=redis_prefix)
    with up.app_context():
        check = next(c for c in doctor(up) if c.name == "rate limits")
    assert check.ok and "redis at 127.0.0.1:6379" in check.detail and "PING" in check.detail
    down = _app_with(tmp_path / "down", REDIS_URL=_dead_redis_url())
    with down.app_context():
        check = next(c for c in doctor(down) if c.name == "rate limits")
    assert not check.ok and check.severity == "error" and "does not answer" in check.detail
    plain = _app_with(tmp_path / "plain")
    with plain.app_context():
        check = next(c for c in doctor(plain) if c.name == "rate limits")
    assert check.ok and check.detail.startswith("database")


def test_redis_url_and_prefix_come_from_the_environment(monkeypatch):
    from kb.config import from_environ

    settings = from_environ({"KB_REDIS_URL": "redis://cache.internal:6379/2", "KB_REDIS_PREFIX": "prov:"})
    assert settings == {"REDIS_URL": "redis://cache.internal:6379/2", "REDIS_PREFIX": "prov:"}


def test_every_limit_says_why_and_what_it_does_when_redis_is_down():
    names = [limit.name for limit in ratelimit.LIMITS]
    assert len(names) == len(set(names))
    for limit in ratelimit.LIMITS:
        assert limit.allowed > 0 and limit.window > 0 and limit.why
        assert limit.when_redis_down in ("database", "open")
    # Security limits must never switch off because Redis is down.
    for limit in (ratelimit.LOGIN_ACCOUNT, ratelimit.LOGIN_ADDRESS, ratelimit.PASSWORD_CHECK,
                  ratelimit.CHECKIN_CODE):
        assert limit.when_redis_down == "database"


# -- the limits in their views ----------------------------------------------------------------

def test_wrong_current_passwords_are_limited(tmp_path):
    app = _app_with(tmp_path)
    client = app.test_client()
    login(client, "dep")
    for _ in range(5):
        page = client.post("/account/password", data={"current": "nope", "new": "a-new-pass-1",
                                                      "confirm": "a-new-pass-1"})
        assert page.status_code == 200 and "当前密码不正确" in page.get_data(as_text=True)
    refused = client.post("/account/password", data={"current": "pw", "new": "a-new-pass-1",
                                                     "confirm": "a-new-pass-1"})
    assert refused.status_code == 429
    assert "当前密码输错次数过多" in refused.get_data(as_text=True)
    with app.app_context():
        from kb.models import User

        user = db.session.scalar(select(User).where(User.username == "dep"))
        assert user.check_password("pw")  # unchanged


def test_wrong_checkin_codes_are_limited(tmp_path):
    app = _app_with(tmp_path)
    client = app.test_client()
    login(client, "dep")
    for _ in range(ratelimit.CHECKIN_CODE.allowed):
        assert client.post("/attendance/code", data={"code": "000000"}).status_code == 400
    refused = client.post("/attendance/code", data={"code": "000000"})
    assert refused.status_code == 429 and "签到码输错次数过多" in refused.get_data(as_text=True)


def test_quiz_starts_are_limited(tmp_path, monkeypatch):
    from kb.cli import run_sync

    from .quizzes_support import write_quiz

    monkeypatch.setattr(ratelimit, "QUIZ_START", Limit("quiz-start", 2, 600, "open", "test"))
    app = _app_with(tmp_path)
    write_quiz(app, text="title: 不限次数\nquestions:\n"  # no attempts: unlimited
               "  - {id: a, type: truefalse, stem: 乡镇人大不设常委会。, answer: 对, "
               "explanation: 乡镇人大不设常委会。, lesson: basics/presidium}\n")
    run_sync(app)
    client = app.test_client()
    login(client, "dep")
    for _ in range(2):
        started = client.post("/quizzes/basics-quiz/start")
        assert "/quizzes/attempt/" in started.headers["Location"]
        attempt = started.headers["Location"].rsplit("/", 1)[-1]
        client.post(f"/quizzes/attempt/{attempt}/submit")
    refused = client.post("/quizzes/basics-quiz/start", follow_redirects=True)
    assert "操作太频繁" in refused.get_data(as_text=True)
    with app.app_context():
        from kb.plugins.quizzes.models import Attempt

        assert db.session.scalar(select(func.count()).select_from(Attempt)) == 2


def test_uploads_are_limited(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr(ratelimit, "UPLOAD", Limit("upload", 1, 600, "open", "test"))
    app = _app_with(tmp_path)
    with app.app_context():
        make_user("staff", "county_staff", make_org("county", "甲县"))
        db.session.commit()
    client = app.test_client()
    login(client, "staff")

    def upload():
        data = {"file": (io.BytesIO("姓名,手机号\n张三,13800000009\n".encode()), "roster.csv")}
        return client.post("/admin/users/import", data=data, content_type="multipart/form-data")

    assert upload().status_code == 302  # to the preview
    refused = upload()
    assert refused.status_code == 429 and "操作太频繁" in refused.get_data(as_text=True)
