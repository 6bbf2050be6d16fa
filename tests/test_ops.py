"""``kb doctor``, ``kb backup`` and ``kb restore`` (round trip on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

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


def _second_server(tmp_path, first):
    """Another app server on ``first``'s database: its own index and its own copy of courses/."""
    import shutil

    from kb import create_app

    from .conftest import make_config

    shutil.copytree(first.config["COURSES_DIR"], tmp_path / "b" / "courses")
    return create_app(make_config(tmp_path / "b", DATABASE_URL=first.config["DATABASE_URL"]))


def _edit(courses, text):
    lesson = Path(courses) / "basics" / "01-status.md"
    lesson.write_text(lesson.read_text(encoding="utf-8") + f"\n\n## 新增小节\n\n{text}\n", encoding="utf-8")


def test_sync_on_a_second_server_catches_up_with_the_first(db_app, tmp_path):
    """Server A syncs an edited lesson first; B's `kb sync` then finds the lesson unchanged in
    the database, but its own index still has the old text: it must update it anyway."""
    from kb import search_index
    from kb.cli import run_sync

    a = db_app
    run_sync(a)
    b = _second_server(tmp_path, a)
    run_sync(b)
    for app in (a, b):
        _edit(app.config["COURSES_DIR"], "跨服务器同步的独特词语鹦鹉螺。")
    run_sync(a)
    report = run_sync(b)
    assert not report.changed_lessons  # B saw nothing new in the database ...
    for app in (a, b):  # ... and still indexed the edit
        with app.app_context():
            hits = search_index(app).search("鹦鹉螺").hits
            assert [h.lesson for h in hits] == ["status"], app.config["INDEX_DIR"]
            from kb.ops import index_lag

            assert not index_lag(app)
    with b.app_context():
        db.engine.dispose()


def test_a_law_imported_through_one_server_reaches_the_others_index(db_app, tmp_path):
    from kb import search_index
    from kb.cli import run_sync
    from kb.laws.cli import update_index
    from kb.laws.library import import_paths

    a = db_app
    run_sync(a)
    b = _second_server(tmp_path, a)
    run_sync(b)
    laws = tmp_path / "laws"
    laws.mkdir()
    (laws / "测试条例.txt").write_text("测试条例\n（2021年3月1日通过）\n第一条 独特的条文犰狳。\n",
                                   encoding="utf-8")
    with a.app_context():  # what `kb laws import` does on server A
        update_index(a, import_paths([laws]))
    with b.app_context():
        from kb.ops import index_lag

        assert index_lag(b).laws == {"测试条例"}
    assert "1 laws" in _sync_note(b)
    with b.app_context():
        assert [h.kind for h in search_index(b).search("犰狳").hits] == ["law_article"]
        db.engine.dispose()


def _sync_note(app) -> str:
    from click.testing import CliRunner

    from kb.cli import build_cli

    return CliRunner().invoke(build_cli(app), ["sync"], catch_exceptions=False).output


def test_an_older_release_stamp_is_read_as_its_version(synced_app):
    from kb.ops import INDEX_STAMP, content_version, index_lag

    stamp = Path(synced_app.config["INDEX_DIR"]) / INDEX_STAMP
    with synced_app.app_context():
        stamp.write_text(content_version(), encoding="utf-8")  # as the release before wrote it
        assert index_lag(synced_app) is not None and not index_lag(synced_app)
        stamp.write_text("catalog=0;laws=0", encoding="utf-8")
        assert index_lag(synced_app) is None  # cannot tell: `kb sync` rebuilds
