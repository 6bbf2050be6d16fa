"""Shared fixtures: a fresh app and database per test, content and index in ``tmp_path``.

``app`` runs on SQLite. ``db_app`` runs each test once on SQLite and once on PostgreSQL
(``KB_TEST_DATABASE_URL``, default the local server on 127.0.0.1:5432); each PostgreSQL test gets
its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("KB_PLUGINS", "quizzes,attendance,progress")

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpora" / "cn-law"
PG_URL = os.environ.get("KB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"),
                             connect_timeout=3):
            return True
    except Exception:
        return False


_PG = None


def pg_available() -> bool:
    global _PG
    if _PG is None:
        _PG = _pg_available()
    return _PG


def make_config(tmp_path: Path, **overrides) -> dict:
    courses = tmp_path / "courses"
    if not courses.exists():
        shutil.copytree(FIXTURES / "courses", courses)
    (tmp_path / "quizzes").mkdir(exist_ok=True)
    config = {
        "TESTING": True,
        "SECRET_KEY": "test",
        "WTF_CSRF_ENABLED": False,
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'kb.sqlite3'}",
        "COURSES_DIR": str(courses),
        "QUIZZES_DIR": str(tmp_path / "quizzes"),
        "INDEX_DIR": str(tmp_path / "index"),
        "CATALOG_TTL": 0.0,
        # scrypt costs ~80 ms a hash; tests that need the real one set it back.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }
    config.update(overrides)
    return config


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


def _build(config):
    from kb import create_app, dbmigrate

    app = create_app(config)
    with app.app_context():
        dbmigrate.upgrade(app)
    return app


@pytest.fixture
def app(config):
    app = _build(config)
    yield app
    with app.app_context():
        from kb.extensions import db

        db.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kb.sqlite3'}"
        return
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} (CI must test it)")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in plain else "?"
    yield f"{plain}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def db_app(tmp_path, db_url):
    """An app with its schema created, once on SQLite and once on PostgreSQL."""
    app = _build(make_config(tmp_path, DATABASE_URL=db_url))
    yield app
    with app.app_context():
        from kb.extensions import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def runner_for(app):
    """Invoke ``kb`` commands against ``app``."""
    from click.testing import CliRunner

    from kb.cli import build_cli

    class Runner:
        def invoke(self, args, **kw):
            return CliRunner().invoke(build_cli(app), args, catch_exceptions=False, **kw)

    return Runner()


@pytest.fixture
def runner(app):
    """Invoke ``kb`` commands against ``app``."""
    return runner_for(app)


@pytest.fixture
def synced_app(app):
    """``app`` with the fixture courses synced and indexed."""
    from kb.cli import run_sync

    run_sync(app)
    return app


def make_org(kind, name, parent=None, code=None):
    """Add an org unit (inside an app context); see :func:`kb.models.add_org_unit`."""
    from kb.models import add_org_unit

    return add_org_unit(kind, name, parent, code)


def make_user(username, role, org, name=None, phone=None, card=None, password="pw"):
    """Add a person (inside an app context) and flush so the id is known."""
    from kb.extensions import db
    from kb.models import User

    user = User(username=username, name=name or username, role=role, org_unit=org, phone=phone,
                deputy_card_no=card)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user


def login(client, username, password="pw"):
    return client.post("/login", data={"login": username, "password": password},
                       follow_redirects=False)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module (skipped when it is missing,
    failed under CI: tests/browser_support.require_chromium)."""
    from playwright.sync_api import sync_playwright

    from .browser_support import launch_chromium, require_chromium

    require_chromium()
    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()
