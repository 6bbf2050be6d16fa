"""Built-in plugin `quizzes`: question banks, timed quizzes, explanations, 错题本, imports.

Quizzes come from ``quizzes/<slug>.yaml`` (synced by ``kb sync``) or from banks county staff
import (Excel/CSV, Moodle GIFT, Moodle XML). Passing a quiz emits :class:`kb.events.QuizPassed`;
this plugin never imports another plugin.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import render_template, url_for
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import select

from kb import hookimpl
from kb.records import Asset, Card, MigrationDir, NavItem, Panel, ReportColumn

from . import models  # noqa: F401  (tables in the metadata)

HERE = Path(__file__).parent


@hookimpl
def kb_init_app(app):
    app.config.setdefault("QUIZZES_DAILY_COUNT", 5)
    app.config.setdefault("QUIZZES_FLAG_LAPSES", 3)


@hookimpl
def kb_blueprints(app):
    from .views import bp

    return [bp]


@hookimpl
def kb_migration_dirs():
    return [MigrationDir(branch="quizzes", path=HERE / "migrations" / "versions")]


@hookimpl
def kb_content_sync(app, settings, report):
    from .content import sync_quizzes

    sync_quizzes(settings, report)


@hookimpl
def kb_nav_items(user):
    if not user.is_authenticated:
        return []
    from kb.fragments import per_locale

    return list(per_locale("quizzes.nav", None, lambda: [
        NavItem(key="quizzes", label=str(_l("测验")), url=url_for("quizzes.index"), order=30),
        NavItem(key="quizzes-review", label=str(_l("错题本")), url=url_for("quizzes.review"),
                order=31)]))


@hookimpl
def kb_lesson_panels(lesson, user):
    if not user.is_authenticated:
        return []
    from kb.fragments import page_key, worker_cache

    from . import service

    rows = service.lesson_panel_rows(user, lesson.course_slug)
    if not rows:
        return []
    # The panel shows only the quizzes and the scores in ``rows`` (never whose they are).
    key = (*page_key(), rows)

    def render():
        return Panel(key="quizzes", title=str(_l("本课程测验")), order=50, html=Markup(render_template(
            "quizzes/panel.html", rows=[
                {"quiz": {"slug": slug, "title": title},
                 "best": None if score is None else {"score": score, "passed": passed}}
                for slug, title, score, passed in rows])))

    return [worker_cache("quizzes.lesson_panels", 512, 2_000_000).get(key, render)]


def db_scalars(query):
    from kb import db

    return db.session.scalars(query)


@hookimpl
def kb_dashboard_cards(user):
    if not user.is_authenticated:
        return []
    from kb import db
    from kb.models import utcnow

    from .models import ReviewCard

    due = db.session.scalar(select(db.func.count()).select_from(ReviewCard).where(
        ReviewCard.user_id == user.id, ReviewCard.due <= utcnow()))
    html = render_template("quizzes/card.html", due=due)
    return [Card(key="quizzes-daily", title=str(_l("每日一练")), html=Markup(html), order=40)]


@hookimpl
def kb_page_assets(endpoint):
    if endpoint and endpoint.startswith("quizzes."):
        return [Asset("css", url_for("quizzes.static", filename="quizzes.css")),
                Asset("js", url_for("quizzes.static", filename="quizzes.js"))]
    return []


@hookimpl
def kb_report_columns(scope):
    from . import service

    if scope.level in ("township", "county"):
        return [ReportColumn(key="quiz_pass_rate", label=str(_l("测验通过率")),
                             values=service.report_pass_rate, kind="percent", order=40)]
    if scope.level == "person":
        return [ReportColumn(key="quiz_passed", label=str(_l("通过测验数")),
                             values=service.report_passed_count, kind="number", order=40)]
    return []


@hookimpl
def kb_cli_commands(app):
    @click.group("quizzes", help="Quizzes: import question banks.")
    def group():
        pass

    @group.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--quiz", "slug", help="Bank (quiz) slug to import into (default: file name).")
    @click.option("--title", help="Title of a new bank.")
    @click.option("--county", "county_id", type=int, help="Org unit id of the owning county.")
    @click.option("--dry-run", is_flag=True, help="Check the file, import nothing.")
    @click.option("--valid-only", is_flag=True, help="Import the valid questions even if others have errors.")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
    def import_cmd(file, slug, title, county_id, dry_run, valid_only, as_json):
        """Import questions from Excel/CSV, Moodle GIFT or Moodle XML."""
        import re

        from .imports import ImportRefused, commit_import, parse_file

        path = Path(file)
        slug = slug or re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-") or "imported"
        with app.app_context():  # messages in the operator's language (kb.i18n.locale_from_env)
            result = parse_file(path.name, path.read_bytes())
        imported, refused = 0, None
        if not dry_run:
            with app.app_context():
                try:
                    imported = commit_import(result, slug=slug, title=title,
                                             org_unit_id=county_id, valid_only=valid_only)
                except ImportRefused as exc:
                    refused = str(exc)
        summary = result.summary(imported)
        if dry_run:
            summary["dry_run"] = True
        if as_json:
            click.echo(json.dumps(summary, ensure_ascii=False))
        else:
            click.echo(f"imported {imported} into {slug}; by type {summary['by_type']}")
            for s in result.skipped:
                click.echo(f"skipped {s['where']}: {s['reason']}")
            for e in result.errors:
                click.echo(f"error {e['where']}: {e['message']}", err=True)
            if refused:
                click.echo(refused, err=True)
        if result.errors and not (valid_only or dry_run):
            raise SystemExit(1)

    return [group]


@hookimpl
def kb_demo_data(app, users):
    from .demo import load_demo

    load_demo(app, users)


@hookimpl
def kb_personal_data(user):
    from .personal import sections

    return sections(user)
