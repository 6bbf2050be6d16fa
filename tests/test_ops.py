"""``kb doctor``, ``kb backup`` and ``kb restore`` (round trip on SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from sqlalchemy import select

from kb.extensions import db
from kb.models import User


def test_doctor_reports_each_part(app, runner):
    result = runner.invoke(["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["database"]["ok"] and checks["migrations"]["ok"]
    assert not checks["search index"]["ok"] and "kb sync" in checks["search index"]["detail"]
    assert result.exit_code == 1
    assert checks["plugins"]["detail"]  # the loaded plugins are listed
    runner.invoke(["sync", "-q"])
    result = runner.invoke(["doctor"])
    assert result.exit_code == 0, result.output
    assert "ok    search index:" in result.output and "FAIL" not in result.output


def test_doctor_sees_a_stale_index(synced_app, runner):
    with synced_app.app_context():
        from kb.content.sync import bump_catalog_version

        bump_catalog_version()  # as if another server synced new content
        db.session.commit()
    result = runner.invoke(["doctor", "--json"])
    index = next(c for c in json.loads(result.output) if c["name"] == "search index")
    assert not index["ok"] and "older than the content" in index["detail"]


def test_doctor_fails_production_with_weak_secret(tmp_path):
    from kb import create_app, dbmigrate
    from kb.ops import doctor

    from .conftest import make_config

    app = create_app(make_config(tmp_path, ENV="production", SECRET_KEY="short-but-not-default"))
    with app.app_context():
        dbmigrate.upgrade(app)
        secret = next(c for c in doctor(app) if c.name == "secret key")
    assert not secret.ok and secret.severity == "error"


def test_backup_and_restore_round_trip(db_app, tmp_path):
    from kb.demo import load_demo
    from kb.ops import backup, restore

    with db_app.app_context():
        load_demo(db_app, "pw")
        before = db.session.scalar(select(db.func.count()).select_from(User))
    target = backup(db_app, tmp_path / "backup.bin")
    assert target.stat().st_size > 0
    with db_app.app_context():
        user = db.session.scalar(select(User).where(User.username == "t1-d01"))
        user.name = "改过的名字"
        db.session.add(User(username="after-backup", name="备份之后", role="deputy"))
        db.session.commit()
        restore(db_app, target)
    with db_app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(User)) == before
        assert db.session.scalar(select(User.name).where(User.username == "t1-d01")) != "改过的名字"
        assert db.session.scalar(select(User).where(User.username == "after-backup")) is None


def test_restore_refuses_a_file_that_is_not_a_backup(app, tmp_path, runner):
    bogus = tmp_path / "not-a-backup.sqlite3"
    bogus.write_text("hello")
    result = runner.invoke(["restore", str(bogus), "--yes"])
    assert result.exit_code != 0 and "not a SQLite backup" in result.output
