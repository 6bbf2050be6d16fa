"""Alembic migrations: the core branch plus one branch per plugin (``kb_migration_dirs``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask

from .extensions import db
from .pluginhost import collect

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(app: Flask, connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    dirs = []
    for record in collect(app.extensions["kb.pm"], "kb_migration_dirs", key="branch"):
        dirs.append(str(record.path))
    cfg.set_main_option("version_locations", " ".join(dirs))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["metadata"] = db.metadata
    cfg.attributes["connection"] = connection
    return cfg


def heads(app: Flask) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(app)).get_heads())


def current(app: Flask) -> set[str]:
    with db.engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def needs_upgrade(app: Flask) -> bool:
    """Return True when some branch head (core or plugin) is not applied yet."""
    script = ScriptDirectory.from_config(alembic_config(app))
    cur = current(app)
    if not cur:
        return True
    applied = {rev.revision for rev in script.revision_map.iterate_revisions(tuple(cur), "base")}
    return not set(script.get_heads()) <= applied


def upgrade(app: Flask, target: str = "heads") -> None:
    """Create or upgrade the database to every branch head."""
    with db.engine.begin() as conn:
        command.upgrade(alembic_config(app, conn), target)


def revision(app: Flask, message: str, branch: str = "core", autogenerate: bool = True) -> None:
    """Write a new migration on ``branch`` (developers only)."""
    with db.engine.begin() as conn:
        cfg = alembic_config(app, conn)
        command.revision(cfg, message=message, autogenerate=autogenerate, head=f"{branch}@head")
