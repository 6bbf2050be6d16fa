"""Built-in plugin `progress`: study record, 学时 ledger, required courses, county reports.

* lesson progress from heartbeats the lesson page sends while the reader is active
  (``static/progress/progress.js``); the server decides how much time counts;
* the 学时 ledger (``progress_ledger``), fed by ``LessonCompleted`` (emitted here), ``QuizPassed``
  and ``AttendanceMarked`` (emitted by other plugins) and approved offline claims;
* required courses per county, role and year (``kb_required_courses``);
* 我的学习, the printable 学习档案, reports with exports, reminders (站内提醒).

See docs/progress.md.
"""

from __future__ import annotations

from pathlib import Path

from flask import render_template, url_for
from flask_babel import gettext as _
from markupsafe import Markup

from kb import hookimpl
from kb.hotread import HotRead
from kb.records import Asset, Card, MigrationDir, NavItem, Panel

from . import (
    models,  # noqa: F401  (tables in the metadata)
    rules,
    service,
)
from . import report as _report
from .views import bp

HERE = Path(__file__).parent


@hookimpl
def kb_init_app(app):
    rules.init_config(app)


@hookimpl
def kb_blueprints(app):
    return [bp]


@hookimpl
def kb_migration_dirs():
    return [MigrationDir(branch="progress", path=HERE / "migrations" / "versions")]


@hookimpl
def kb_nav_items(user):
    if not getattr(user, "is_authenticated", False):
        return []
    from kb.fragments import per_locale

    return list(per_locale("progress.nav", user.role in _REPORT_ROLES, lambda: _nav(user.role)))


_REPORT_ROLES = ("chair", "secretary", "county_staff", "admin")


def _nav(role):
    items = [NavItem(key="progress", label=_("我的学习"), url=url_for("progress.mine"), order=20)]
    if role in _REPORT_ROLES:
        items.append(NavItem(key="progress-report", label=_("学习报表"),
                             url=url_for("progress.report_home"), order=60))
    return items


@hookimpl
def kb_page_assets(endpoint, user):
    if not getattr(user, "is_authenticated", False):
        return []
    if endpoint == "core.lesson":
        from kb.fragments import per_locale

        return list(per_locale("progress.assets", endpoint, lambda: [
            Asset("js", url_for("progress.static", filename="progress/progress.js")),
            Asset("css", url_for("progress.static", filename="progress/progress.css"))]))
    if endpoint.startswith("progress.") or endpoint == "core.home":
        return [Asset("css", url_for("progress.static", filename="progress/progress.css"))]
    return []


def _panel_state_statement():
    from sqlalchemy import bindparam, select

    t = models.LessonProgress.__table__
    return select(t.c.seconds, t.c.max_scroll, t.c.last_scroll, t.c.completed_at).where(
        t.c.user_id == bindparam("user_id"), t.c.lesson_id == bindparam("lesson_id"))


_PANEL_STATE = HotRead(_panel_state_statement)


def panel_state(user_id: int, lesson_id: int):
    """(seconds, max_scroll, last_scroll, completed_at) of the person's row for the lesson, or
    None: one query on the driver's cursor (:mod:`kb.hotread`), no ORM objects."""
    return _PANEL_STATE.first({"user_id": user_id, "lesson_id": lesson_id})


@hookimpl
def kb_lesson_panels(lesson, user):
    if not getattr(user, "is_authenticated", False):
        return []
    from kb.fragments import Shell, csrf_value, hole, page_key, worker_cache

    row = panel_state(user.id, lesson.id)
    need = rules.min_seconds(lesson.minutes)
    # The panel shows only the row's figures (never who it belongs to), so it is cached by
    # them; the CSRF token of the person's session is a hole filled per request.
    key = (*page_key(), lesson.id, need, tuple(row) if row else None)

    def render():
        return _("学习进度"), Shell(render_template(
            "progress/panel.html", lesson=lesson, row=row, need=need, csrf_token=lambda: hole("csrf")))

    title, shell = worker_cache("progress.lesson_panels", 512, 2_000_000).get(key, render)
    return [Panel(key="progress", title=title, html=shell.fill({"csrf": csrf_value}), order=10)]


@hookimpl
def kb_continue_learning(user):
    if not getattr(user, "is_authenticated", False):
        return None
    from kb import get_catalog

    cat = get_catalog()
    for row in service.last_unfinished(user.id):
        lesson = cat.lesson_by_id(row.lesson_id)
        if lesson is not None:
            html = render_template("progress/continue.html", lesson=lesson, row=row)
            return Card(key="progress-continue", title=_("继续学习"), html=Markup(html),
                        slot="continue")
    return None


@hookimpl
def kb_dashboard_cards(user):
    if not getattr(user, "is_authenticated", False):
        return []
    cards = []
    notices = service.unread_notices(user.id)
    if notices:
        cards.append(Card(key="progress-notices", title=_("站内提醒"), order=5,
                          html=Markup(render_template("progress/card_notices.html", notices=notices))))
    year = rules.local_today().year
    if user.role in rules.LEARNER_ROLES:
        total, target = service.hours_in_year(user.id, year), rules.target_for(user.role)
        cards.append(Card(key="progress-hours", title=_("%(y)s 年学时", y=year), order=10,
                          html=Markup(render_template("progress/card_hours.html", total=total,
                                                      target=target, year=year))))
    if user.role in ("chair", "secretary", "county_staff", "admin") and user.org_unit is not None:
        org = user.org_unit
        level = _report.level_of(org)
        loader = {"person": service.township_stats, "township": service.county_stats}.get(level)
        stats = None
        if loader is not None:
            key = org.id if level == "person" else org.id
            stats = loader((key,), year).get(key)
        pending = 0
        if user.role in ("county_staff", "admin"):
            from sqlalchemy import func, select

            from kb import db
            from kb.authz import managed_org_ids
            from kb.models import User

            from .models import Claim

            q = select(func.count()).select_from(Claim).join(User, User.id == Claim.user_id) \
                .where(Claim.status == "pending")
            ids = managed_org_ids(user)
            if ids is not None:
                q = q.where(User.org_unit_id.in_(ids or {-1}))
            pending = db.session.scalar(q)
        cards.append(Card(key="progress-staff", title=_("学习进度概况"), order=20,
                          html=Markup(render_template("progress/card_staff.html", stats=stats,
                                                      org=org, year=year, pending=pending))))
    return cards


@hookimpl
def kb_track_event(event):
    service.track(event)


@hookimpl
def kb_report_columns(scope):
    return _report.columns_for(scope)


@hookimpl
def kb_required_courses(user, year):
    return sorted({r.course_slug for r in service.required_for(user, year)})


@hookimpl
def kb_cli_commands(app):
    import click

    @click.command("progress-rebuild")
    def progress_rebuild():
        """Recompute the report totals (学时 per person and year, lessons done per course)."""
        from kb import db

        with app.app_context():
            years, courses = service.rebuild_totals()
            db.session.commit()
        click.echo(f"progress totals rebuilt: {years} person-years, {courses} person-courses")

    return [progress_rebuild]


@hookimpl
def kb_demo_data(app, users):
    from .demo import load

    load(app, users)


@hookimpl
def kb_personal_data(user):
    from .personal import sections

    return sections(user)
