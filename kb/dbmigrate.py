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


def _branch_dirs(app: Flask) -> list:
    """The migration dirs of the core and the loaded plugins (``kb_migration_dirs`` records)."""
    return collect(app.extensions["kb.pm"], "kb_migration_dirs", key="branch")


def _dormant_dirs(app: Flask) -> list:
    """Migration dirs of built-in plugins that are installed but not loaded (KB_PLUGINS).

    A database keeps the revisions of a plugin that was once enabled; Alembic must still find
    them after the plugin is switched off, or every upgrade fails with "Can't locate revision".
    Their branches are known but never upgraded while the plugin is off.
    """
    import importlib

    from .pluginhost import BUILTIN_PLUGINS, plugin_names

    loaded = set(plugin_names(app.extensions["kb.pm"]))
    dirs = []
    for name, module_name in BUILTIN_PLUGINS:
        if name in loaded:
            continue
        hook = getattr(importlib.import_module(module_name), "kb_migration_dirs", None)
        if hook is not None:
            dirs.extend(hook())
    return dirs


def alembic_config(app: Flask, connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    dirs = [str(record.path) for record in _branch_dirs(app) + _dormant_dirs(app)]
    cfg.set_main_option("version_locations", " ".join(dirs))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["metadata"] = db.metadata
    cfg.attributes["connection"] = connection
    return cfg


def _enabled_heads(app: Flask, script: ScriptDirectory) -> set[str]:
    """Heads of the core branch and of the loaded plugins' branches."""
    branches = {record.branch for record in _branch_dirs(app)}
    return {script.get_revision(f"{branch}@head").revision for branch in branches}


def heads(app: Flask) -> set[str]:
    """Return the heads the database must reach: the core's and the loaded plugins'."""
    return _enabled_heads(app, ScriptDirectory.from_config(alembic_config(app)))


def current(app: Flask) -> set[str]:
    with db.engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def needs_upgrade(app: Flask) -> bool:
    """Return True when some branch head (core or loaded plugin) is not applied yet."""
    script = ScriptDirectory.from_config(alembic_config(app))
    cur = current(app)
    if not cur:
        return True
    applied = {rev.revision for rev in script.revision_map.iterate_revisions(tuple(cur), "base")}
    return not _enabled_heads(app, script) <= applied


def upgrade(app: Flask, target: str = "heads") -> None:
    """Create or upgrade the database to the core's and every loaded plugin's branch head.

    ``target`` may name one revision instead (tests upgrade to a release's revisions).
    """
    with db.engine.begin() as conn:
        cfg = alembic_config(app, conn)
        if target != "heads":
            command.upgrade(cfg, target)
            return
        script = ScriptDirectory.from_config(cfg)
        for head in sorted(_enabled_heads(app, script)):
            command.upgrade(cfg, head)


def revision(app: Flask, message: str, branch: str = "core", autogenerate: bool = True) -> None:
    """Write a new migration on ``branch`` (developers only)."""
    with db.engine.begin() as conn:
        cfg = alembic_config(app, conn)
        command.revision(cfg, message=message, autogenerate=autogenerate, head=f"{branch}@head")
