"""``kb users`` and ``kb orgs``: people and organisations for scripts and operators."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..cli import ensure_database
from ..extensions import db
from ..models import OrgUnit, User


def _app():
    return click.get_current_context().find_root().obj["app"]


def org_paths() -> dict[int, str]:
    """Return {org id: "省/市/县/乡镇"} for every unit."""
    units = {o.id: o for o in db.session.scalars(select(OrgUnit))}
    return {oid: "/".join(units[int(p)].name for p in o.path.strip("/").split("/") if p and int(p) in units)
            for oid, o in units.items()}


@click.group("users")
def users_group():
    """People: list, import rosters."""


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--inactive", is_flag=True, help="Include deactivated accounts.")
def users_list(as_json, inactive):
    """List accounts: username, name, role, organisation path, active."""
    app = _app()
    with app.app_context():
        ensure_database(app)
        paths = org_paths()
        query = select(User).order_by(User.org_unit_id, User.role, User.username)
        if not inactive:
            query = query.where(User.active.is_(True))
        rows = [{"username": u.username, "name": u.name, "role": u.role,
                 "organisation": paths.get(u.org_unit_id, ""), "active": bool(u.active)}
                for u in db.session.scalars(query)]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        click.echo(f"{r['username']:<16} {r['name']:<8} {r['role']:<13} {r['organisation']}"
                   + ("" if r["active"] else "  (inactive)"))


@users_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show every row's outcome; write nothing.")
@click.option("--codes", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the new accounts' one-time codes to this CSV (default: print them).")
def users_import(file, dry_run, codes):
    """Import a roster (.xlsx or .csv, UTF-8 or GBK); all rows or nothing."""
    from .. import audit
    from . import roster

    app = _app()
    with app.app_context():
        ensure_database(app)
        preview = roster.build_preview(file.name, file.read_bytes(), None)
        for error in preview.file_errors:
            click.echo(f"{file}: {error}", err=True)
        for o in preview.outcomes:
            if o.status == "error":
                for e in o.errors:
                    click.echo(f"{file}: {e}", err=True)
        counts = preview.counts
        click.echo(f"new {counts.get('new', 0)}, updated {counts.get('updated', 0)}, "
                   f"unchanged {counts.get('unchanged', 0)}, errors {counts.get('error', 0)}")
        if not preview.ok:
            click.echo("nothing was imported: fix the errors and run again", err=True)
            sys.exit(1)
        if dry_run:
            click.echo("dry run: nothing was written")
            return
        result = roster.commit(preview, None)
        audit.record("user.import", None, _l("命令行导入 %(filename)s：新建 %(created)s，更新 %(updated)s",
                                             filename=file.name, created=len(result.created),
                                             updated=result.updated),
                     filename=file.name)
        db.session.commit()
        lines = [(u.username, u.name, code) for u, code in result.created]
        # The codes file is for the people who hand the codes out: headers in the operator's language.
        header = [_("用户名"), _("姓名"), _("一次性登录码")]
    if codes:
        codes.write_bytes(roster.to_csv_plain(header, lines))
        click.echo(f"one-time codes of {len(lines)} new accounts written to {codes}")
    else:
        for username, name, code in lines:
            click.echo(f"{username}\t{name}\t{code}")


@click.group("orgs")
def orgs_group():
    """Organisations."""


@orgs_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def orgs_list(as_json):
    """List units: id, kind, name, code, path, active."""
    app = _app()
    with app.app_context():
        ensure_database(app)
        paths = org_paths()
        rows = [{"id": o.id, "kind": o.kind, "name": o.name, "code": o.code, "path": paths[o.id],
                 "parent_id": o.parent_id, "active": bool(o.is_active)}
                for o in db.session.scalars(select(OrgUnit).order_by(OrgUnit.path))]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']:>5} {r['kind']:<9} {r['path']}" + ("" if r["active"] else "  (inactive)"))
