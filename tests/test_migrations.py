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
