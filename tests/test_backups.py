"""``kb backup`` / ``kb restore`` with real data, on SQLite and PostgreSQL.

The data is the 0.1.0 release fixture (tests/fixtures/releases: demo people and organisations,
lessons, the law library, attendance records, progress rows and the 学时 ledger, quiz attempts
and answers, a roster import): loaded, backed up with ``kb backup``, changed (rows edited,
added and deleted), restored with ``kb restore``: every row of every table must be back exactly
as it was, nothing added must remain, and the app must work on it (sign in, a new write).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid

import pytest
import sqlalchemy as sa

from kb import create_app, dbmigrate
from kb.extensions import db

from .conftest import PG_URL, login, make_config, pg_available, runner_for
from .release_data import assert_fixture_data, load_release, read_fixture

RELEASE = "0.1.0"


def _app_with_data(tmp_path, url, name="a"):
    """The release's database with its data, upgraded to the current schema."""
    app = create_app(make_config(tmp_path, DATABASE_URL=url, INSTANCE_DIR=str(tmp_path / name)))
    with app.app_context():
        load_release(app, RELEASE)
    return app


def _change_everything(app):
    """Edit, add and delete rows in the core and in every plugin's tables."""
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE \"user\" SET name = '改过的名字' WHERE username = 't1-d01'"))
        conn.execute(sa.text("DELETE FROM quiz_answer WHERE id IN (SELECT MIN(id) FROM quiz_answer)"))
        conn.execute(sa.text("UPDATE attendance_record SET status = 'absent'"))
        conn.execute(sa.text("UPDATE progress_ledger SET hours = hours + 100"))
        conn.execute(sa.text("DELETE FROM law_article"))
    client = app.test_client()
    assert login(client, "t1-d02", "pw").status_code == 302
    claim = {"title": "备份之后的申报", "held_on": dt.date.today().isoformat(), "hours": "1"}
    assert client.post("/progress/claims/new", data=claim).status_code == 302


def _assert_restored(app, fixture):
    with app.app_context(), db.engine.connect() as conn:
        assert_fixture_data(conn, fixture, release=RELEASE, upgraded=True, meta=db.metadata)
        assert conn.execute(sa.text(
            "SELECT COUNT(*) FROM progress_claim WHERE title = '备份之后的申报'")).scalar() == 0
    # The app works on the restored data, and new rows get new ids (sequences came back too).
    client = app.test_client()
    assert login(client, "t1-d01", "pw").status_code == 302
    page = client.get("/progress/").get_data(as_text=True)
    assert "县委党校代表履职专题班" in page  # the demo claim
    claim = {"title": "恢复之后的申报", "held_on": dt.date.today().isoformat(), "hours": "1"}
    assert client.post("/progress/claims/new", data=claim).status_code == 302


def test_backup_and_restore_round_trip_real_data(db_url, tmp_path):
    fixture = read_fixture(RELEASE)
    app = _app_with_data(tmp_path, db_url)
    runner = runner_for(app)
    try:
        target = tmp_path / "nightly.backup"
        result = runner.invoke(["backup", str(target)])
        assert result.exit_code == 0 and "backup written" in result.output, result.output
        _change_everything(app)
        result = runner.invoke(["restore", str(target), "--yes"])
        assert result.exit_code == 0, result.output
        _assert_restored(app, fixture)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_sqlite_backup_restores_onto_a_new_machine(tmp_path):
    """Disaster recovery: the backup is restored where there is no database yet."""
    fixture = read_fixture(RELEASE)
    app = _app_with_data(tmp_path, f"sqlite:///{tmp_path / 'old.sqlite3'}")
    backup = tmp_path / "kb.sqlite3.backup"
    assert runner_for(app).invoke(["backup", str(backup)]).exit_code == 0
    with app.app_context():
        db.engine.dispose()
    new_home = tmp_path / "new-machine"
    fresh = create_app(make_config(new_home, DATABASE_URL=f"sqlite:///{new_home / 'kb.sqlite3'}",
                                   INSTANCE_DIR=str(new_home / "instance")))
    result = runner_for(fresh).invoke(["restore", str(backup), "--yes"])
    assert result.exit_code == 0, result.output
    with fresh.app_context():
        assert not dbmigrate.needs_upgrade(fresh)
    _assert_restored(fresh, fixture)
    with fresh.app_context():
        db.engine.dispose()


@pytest.fixture
def two_pg_databases():
    """Two whole PostgreSQL databases of our own (not schemas), dropped afterwards."""
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    import psycopg

    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    base = plain.rsplit("/", 1)[0]
    names = [f"kb_backup_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(plain, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    yield [f"{base}/{name}" for name in names]
    with psycopg.connect(plain, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgresql_whole_database_backup_restores_here_and_on_a_new_server(tmp_path,
                                                                           two_pg_databases):
    """The production shape: the app's own database (public schema), not a test schema.
    Restored over the changed database, and into an empty database (a new server)."""
    fixture = read_fixture(RELEASE)
    here, elsewhere = two_pg_databases
    app = _app_with_data(tmp_path, here)
    other = create_app(make_config(tmp_path, DATABASE_URL=elsewhere,
                                   INSTANCE_DIR=str(tmp_path / "b")))
    try:
        target = tmp_path / "kb.pgdump"
        assert runner_for(app).invoke(["backup", str(target)]).exit_code == 0
        _change_everything(app)
        result = runner_for(app).invoke(["restore", str(target), "--yes"])
        assert result.exit_code == 0, result.output
        _assert_restored(app, fixture)
        result = runner_for(other).invoke(["restore", str(target), "--yes"])
        assert result.exit_code == 0, result.output
        with other.app_context():
            assert not dbmigrate.needs_upgrade(other)
        _assert_restored(other, fixture)
    finally:
        for a in (app, other):
            with a.app_context():
                db.session.remove()
                db.engine.dispose()


def test_backup_onto_a_full_disk_fails_clearly_and_leaves_no_partial_file(tmp_path):
    from .faults_support import Filler, mounted_small_disk

    app = _app_with_data(tmp_path, f"sqlite:///{tmp_path / 'kb.sqlite3'}")
    try:
        with mounted_small_disk(tmp_path, size="1m") as disk:
            filler = Filler(disk)
            filler.fill()
            target = disk / "kb-nightly.sqlite3"
            result = runner_for(app).invoke(["backup", str(target)])
            assert result.exit_code == 1, result.output
            assert "backup to" in result.output and "failed" in result.output
            assert "Traceback" not in result.output and not target.exists()
            filler.free()
            assert runner_for(app).invoke(["backup", str(target)]).exit_code == 0
            assert target.read_bytes().startswith(b"SQLite format 3")
    finally:
        with app.app_context():
            db.engine.dispose()
