"""Migrations: upgrade heads on an empty database matches the models; table names are owned."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from kb import create_app, dbmigrate
from kb.extensions import db
from kb.models import CORE_TABLES
from kb.pluginhost import BUILTIN_PLUGINS

from .conftest import make_config

PLUGIN_PREFIXES = {"quizzes": "quiz_", "attendance": "attendance_", "progress": "progress_"}


def test_upgrade_heads_on_empty_database_matches_models(tmp_path, db_url):
    app = create_app(make_config(tmp_path, DATABASE_URL=db_url))
    with app.app_context():
        dbmigrate.upgrade(app)
        assert not dbmigrate.needs_upgrade(app)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)
        assert diff == []
        dbmigrate.upgrade(app)  # a second run is a no-op
        db.engine.dispose()


def test_switching_plugins_on_and_off_keeps_upgrades_working(tmp_path, db_url):
    from sqlalchemy import inspect

    def step(plugins):
        app = create_app(make_config(tmp_path, DATABASE_URL=db_url, PLUGINS=plugins))
        app.ctx = app.app_context()
        app.ctx.push()
        return app

    def tables():
        return set(inspect(db.engine).get_table_names())

    def done(app):
        db.engine.dispose()
        app.ctx.pop()

    app = step(["progress"])
    dbmigrate.upgrade(app)
    assert "progress_lesson" in tables() and not any(t.startswith("quiz_") for t in tables())
    done(app)
    # Switched on later: the plugin's branch is upgraded, its tables appear.
    app = step(["progress", "quizzes"])
    assert dbmigrate.needs_upgrade(app)
    dbmigrate.upgrade(app)
    assert "quiz_attempt" in tables() and not dbmigrate.needs_upgrade(app)
    done(app)
    app = step(["quizzes", "attendance", "progress"])
    dbmigrate.upgrade(app)
    everything = dbmigrate.current(app)
    done(app)
    # Switched off again: their revisions stay recorded and are still found; nothing to do.
    app = step(["progress"])
    assert not dbmigrate.needs_upgrade(app)
    dbmigrate.upgrade(app)
    assert dbmigrate.current(app) == everything and dbmigrate.heads(app) < everything
    assert "quiz_attempt" in tables()  # switching off never drops data
    done(app)


def test_every_table_is_core_or_prefixed_by_its_plugin():
    assert set(PLUGIN_PREFIXES) == {name for name, _ in BUILTIN_PLUGINS}
    stray = [
        t for t in db.metadata.tables
        if t not in CORE_TABLES and not t.startswith(tuple(PLUGIN_PREFIXES.values()))
    ]
    assert stray == []


def test_sqlite_runs_in_wal_mode(app):
    from sqlalchemy import text

    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
