"""``kb doctor``, ``kb backup`` and ``kb restore``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _app():
    return click.get_current_context().find_root().obj["app"]


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True)
def doctor_cmd(as_json):
    """Check a deployment: database reachable and migrated, index current, secret key, plugins."""
    from .ops import doctor

    app = _app()
    with app.app_context():
        checks = doctor(app)
    failed = [c for c in checks if not c.ok and c.severity == "error"]
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in checks], ensure_ascii=False, indent=2))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.severity == "error" else "warn")
            click.echo(f"{mark}  {c.name}: {c.detail}")
    sys.exit(1 if failed else 0)


@click.command("backup")
@click.argument("target", required=False, type=click.Path(dir_okay=False, path_type=Path))
def backup_cmd(target):
    """Back up the database (SQLite online backup, or pg_dump) to TARGET or instance/backups/."""
    from .ops import BackupError, backup

    app = _app()
    try:
        path = backup(app, target)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backup written: {path}")


@click.command("restore")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def restore_cmd(source, yes):
    """Replace the database with a backup (stop the app servers first)."""
    from .ops import BackupError, restore

    if not yes:
        click.confirm(f"Replace everything in the database with {source}?", abort=True)
    app = _app()
    try:
        with app.app_context():
            restore(app, source)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("restored; run `kb db upgrade` if the backup is from an older release, then `kb sync`")
