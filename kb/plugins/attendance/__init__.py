"""Built-in plugin `attendance`: training classes, sessions, QR check-in, leave and reports.

County staff (for their county) and township chairs/secretaries (for their township) run
training classes (培训班) of sessions worth 学时. People check in by scanning a rotating QR code
on the projector (or typing its 6-digit code); organisers mark, correct and approve leave; ended
sessions mark the unmarked 缺席 lazily (or with ``kb attendance close-sessions``). Marking
出席/迟到 emits :class:`kb.events.AttendanceMarked`. See ``docs/attendance.md``.
"""

from __future__ import annotations

from pathlib import Path

import click
from flask import url_for

from kb import hookimpl
from kb.records import Asset, Card, MigrationDir, NavItem, ReportColumn

HERE = Path(__file__).parent

_PAGE_SCRIPTS = {
    "attendance.projector": "projector.js",
    "attendance.live": "live.js",
    "attendance.sheet": "sheet.js",
    "attendance.enrol": "enrol.js",
    "attendance.session_detail": "enrol.js",
}


@hookimpl
def kb_init_app(app):
    from . import service

    for key, value in service.DEFAULTS.items():
        app.config.setdefault(key, value)


@hookimpl
def kb_blueprints(app):
    from . import models  # noqa: F401  (register the tables)
    from .views import bp

    return [bp]


@hookimpl
def kb_migration_dirs():
    return [MigrationDir(branch="attendance", path=HERE / "migrations" / "versions")]


@hookimpl
def kb_cli_commands(app):
    @click.group("attendance")
    def group():
        """Training attendance (培训签到)."""

    @group.command("close-sessions")
    def close_sessions():
        """Mark the unmarked people of every ended session 缺席."""
        from . import service

        with app.app_context():
            n = service.close_due_sessions()
        click.echo(f"closed {n} session(s)")

    return [group]


@hookimpl
def kb_nav_items(user):
    if not getattr(user, "is_authenticated", False):
        return []
    from kb.authz import REPORT_ROLES
    from kb.fragments import per_locale

    return list(per_locale("attendance.nav", user.role in REPORT_ROLES,
                           lambda: _nav(user.role in REPORT_ROLES)))


def _nav(organiser: bool):
    from flask_babel import gettext as _

    items = [NavItem(key="attendance", label=_("我的培训"), url=url_for("attendance.mine"), order=40)]
    if organiser:
        items.append(NavItem(key="attendance-admin", label=_("培训签到"),
                             url=url_for("attendance.classes"), order=41))
    return items


@hookimpl
def kb_dashboard_cards(user):
    if not getattr(user, "is_authenticated", False):
        return []
    from flask_babel import gettext as _

    from .views import dashboard_card_html

    html = dashboard_card_html(user)
    if html is None:
        return []
    return [Card(key="attendance-upcoming", title=_("近期培训"), html=html, order=30)]


@hookimpl
def kb_page_assets(endpoint):
    if not endpoint or not endpoint.startswith("attendance."):
        return []
    assets = [Asset("css", url_for("attendance.static", filename="attendance/attendance.css"))]
    script = _PAGE_SCRIPTS.get(endpoint)
    if script:
        assets.append(Asset("js", url_for("attendance.static", filename="attendance/" + script)))
    return assets


@hookimpl
def kb_report_columns(scope):
    if scope.level not in ("county", "township", "person"):
        return []
    from . import service

    def values(s):
        # The report's percent columns are on the 0-100 scale; rate_by gives 0-1.
        return {row: round(r * 100, 1) for row, r in service.rate_by(s.level, s.row_ids, s.year).items()}

    from flask_babel import lazy_gettext as _l

    return [ReportColumn(key="attendance_rate", label=str(_l("培训出勤率")), values=values, kind="percent",
                         order=60)]


@hookimpl
def kb_demo_data(app, users):
    from .demo import load

    load(app, users)


@hookimpl
def kb_personal_data(user):
    from .personal import sections

    return sections(user)
