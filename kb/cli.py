"""The ``kb`` command line: sync, search, serve, demo, plugins, db; plugins add their own."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import click

from .records import SyncReport, SyncSettings


def _app():
    ctx = click.get_current_context()
    return ctx.find_root().obj["app"]


class SyncError(click.ClickException):
    """``kb sync`` could not finish; the message says what is saved and what to do."""


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc)


def ensure_database(app) -> bool:
    """Create or upgrade the database when it is not at every head; return True if it did."""
    from . import dbmigrate

    if dbmigrate.needs_upgrade(app):
        dbmigrate.upgrade(app)
        return True
    return False


@click.command()
@click.option("--courses", "courses_dir", type=click.Path(file_okay=False), help="Courses folder (default KB_COURSES_DIR).")
@click.option("--quizzes", "quizzes_dir", type=click.Path(file_okay=False), help="Quizzes folder (default KB_QUIZZES_DIR).")
@click.option("--rebuild", is_flag=True, help="Re-read every file and rebuild the search index from scratch.")
@click.option("--strict", is_flag=True, help="Exit non-zero when any file has an error.")
@click.option("--quiet", "-q", is_flag=True, help="Print problems only.")
def sync(courses_dir, quizzes_dir, rebuild, strict, quiet):
    """Load courses and quizzes into the database and update the search index."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        report = run_sync(_app(), courses_dir, quizzes_dir, rebuild=rebuild, strict=strict,
                          quiet=quiet)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise SyncError(
            f"the database could not be updated: {reason}. What this sync had not committed "
            "was rolled back; fix the cause (a full disk, the database server down) and run "
            "`kb sync` again") from exc
    if strict and report.errors:
        raise SystemExit(1)


def run_sync(app, courses_dir=None, quizzes_dir=None, *, rebuild=False, strict=False,
             quiet=True) -> SyncReport:
    from . import get_catalog, searching
    from .content.sync import CourseSyncer
    from .pluginhost import call_each

    settings = SyncSettings(
        courses_dir=Path(courses_dir or app.config["COURSES_DIR"]).resolve(),
        quizzes_dir=Path(quizzes_dir or app.config["QUIZZES_DIR"]).resolve(),
        rebuild=rebuild, strict=strict,
    )
    from .search import SearchIndexBusy, SearchIndexUnreadable

    started = time.perf_counter()
    with app.app_context():
        if ensure_database(app) and not quiet:
            click.echo("database created/upgraded", err=True)
        report = SyncReport()
        extensions = [e for _, exts in call_each(app.extensions["kb.pm"], "kb_markdown_extensions", app=app) for e in exts]
        files = sum(1 for _ in settings.courses_dir.rglob("*.md")) if settings.courses_dir.is_dir() else 0
        show = not quiet and sys.stderr.isatty()
        with click.progressbar(length=files, label="lessons", file=sys.stderr, show_pos=True,
                               hidden=not show) as bar:
            CourseSyncer(settings.courses_dir, report, extensions,
                         progress=lambda _p: bar.update(1), force=rebuild).run()
        app.extensions["kb.pm"].hook.kb_content_sync(app=app, settings=settings, report=report)
        if strict:
            from .laws.check import check_lessons

            for p in check_lessons(settings.courses_dir):
                report.problem(p.path, p.line, p.message, p.severity)

        app.extensions["kb.catalog"].invalidate()
        from .ops import IndexLag, catch_up_index, index_lag, stamp_index

        index = searching.get_index(app)
        state, detail = index.check()
        try:
            # What this server's own index misses of what the database holds: the lessons this
            # run changed, and what another app server synced into the shared database before
            # (or what an earlier sync saved in the database but failed to write to the index).
            lag = None if rebuild or state != "ok" else index_lag(app)
            if lag is None:  # no index, a damaged one, --rebuild, or a stamp that cannot tell
                if state == "unreadable":
                    click.echo(f"search index unreadable ({detail}): rebuilding it", err=True)
                count = searching.rebuild(app, get_catalog(app))
                index_note = f"index rebuilt: {count} documents"
            else:
                lag = IndexLag(lag.lessons | set(report.changed_lessons), lag.laws)
                if lag:
                    # Only the changed lessons and laws are needed here, not the whole catalog.
                    catch_up_index(app, lag)
                    index_note = f"index updated: {len(lag.lessons)} lessons" + (
                        f", {len(lag.laws)} laws" if lag.laws else "")
                else:
                    index_note = "index up to date"
            stamp_index(app)
        except (OSError, SearchIndexBusy, SearchIndexUnreadable) as exc:
            raise SyncError(
                f"the search index was not updated: {_os_error(exc)}. The lessons are saved in "
                "the database and the live index is unchanged (it keeps answering searches); "
                "fix the cause and run `kb sync` again (it catches the index up)") from exc
        from . import emit
        from .events import ContentSynced

        emit(ContentSynced(user_id=0, key=f"sync:{time.time_ns()}",
                           changed_lessons=tuple(sorted(report.changed_lessons))), app)

    for problem in report.problems:
        click.echo(f"{problem}" if problem.severity == "error" else f"{problem} (warning)", err=True)
    if not quiet:
        def fmt(d):
            return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "0"
        click.echo(
            f"added: {fmt(report.added)}; updated: {fmt(report.updated)}; "
            f"unchanged: {fmt(report.unchanged)}; removed: {fmt(report.removed)}; "
            f"{len(report.errors)} errors; {index_note} ({time.perf_counter() - started:.1f}s)",
            err=True,
        )
    return report


@click.command()
@click.argument("query", nargs=-1, required=True)
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--course", default=None, help="Only this course (slug).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of {url, course, lesson, title, snippet, score}.")
def search(query, limit, course, as_json):
    """Search the lessons from the command line."""
    from . import search_index
    from .api import hit_json

    app = _app()
    with app.app_context():
        results = search_index(app).search(" ".join(query), course=course, per_page=limit)
    if as_json:
        click.echo(json.dumps([hit_json(h) for h in results.hits], ensure_ascii=False, indent=2))
        return
    if results.index_missing:
        click.echo("the search index is missing: run `kb sync`", err=True)
        raise SystemExit(1)
    if not results.hits:
        click.echo("no results" + (f"; try: {', '.join(results.suggestions)}" if results.suggestions else ""))
    import re

    for hit in results.hits:
        snippet = re.sub(r"<[^>]+>", "", hit.snippet)
        click.echo(f"{hit.score:6.2f}  {hit.title}" + (f" › {hit.heading}" if hit.heading else ""))
        click.echo(f"        {hit.url}")
        click.echo(f"        {snippet}")


@click.command()
@click.option("--port", type=int, default=None, help="Port (default KB_PORT or 5000).")
@click.option("--host", default=lambda: os.environ.get("KB_HOST", "127.0.0.1"), show_default="KB_HOST or 127.0.0.1")
@click.option("--workers", type=int, default=lambda: int(os.environ.get("KB_WORKERS", "2")), show_default="KB_WORKERS or 2")
def serve(port, host, workers):
    """Serve the app with a production WSGI server (gunicorn; waitress on Windows)."""
    app = _app()
    port = port or int(app.config["PORT"])
    click.echo(f"serving on http://{host}:{port}/", err=True)
    if sys.platform == "win32" or shutil.which("gunicorn") is None and not _has_module("gunicorn"):
        from waitress import serve as waitress_serve

        from .wsgi import app as wsgi_app

        waitress_serve(wsgi_app, host=host, port=port, threads=max(4, workers * 2))
        return
    args = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers),
            "--access-logfile", "-", "--forwarded-allow-ips", os.environ.get("KB_FORWARDED_ALLOW_IPS", "127.0.0.1"),
            *_control_socket_args(app), "kb.wsgi:app"]
    os.execv(sys.executable, args)


def _control_socket_args(app) -> list[str]:
    """gunicorn's control socket in this deployment's instance folder: by default every
    gunicorn of the user shares ~/.gunicorn/gunicorn.ctl, so a second app server on the same
    machine takes the first one's socket."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:  # pragma: no cover - gunicorn is checked for above
        return []
    if "control_socket" not in {s.name for s in KNOWN_SETTINGS}:
        return []  # an older gunicorn without a control socket
    path = Path(app.instance_path) / "gunicorn.ctl"
    if len(os.fsencode(path)) > 100:  # longer than a Unix socket address may be
        return ["--no-control-socket"]
    return ["--control-socket", str(path)]


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@click.command()
@click.option("--password", default=None, help="Demo password (default KB_DEMO_PASSWORD).")
def demo(password):
    """Create the demo county, townships and accounts (idempotent) and print the logins."""
    from .demo import demo_accounts, load_demo

    app = _app()
    password = password or app.config["DEMO_PASSWORD"]
    with app.app_context():
        ensure_database(app)
        created = load_demo(app, password)
    click.echo(f"demo data: {len(created)} accounts created" if created else "demo data: already present")
    click.echo(f"demo logins (password for all: {password}):")
    for username, role, what in demo_accounts():
        click.echo(f"  {username:<10} {role:<13} {what}")


@click.command("plugins")
def plugins_cmd():
    """List the loaded plugins and the hooks each implements."""
    from .pluginhost import hook_table

    for name, hooks in hook_table(_app().extensions["kb.pm"]):
        click.echo(f"{name}: {', '.join(hooks) if hooks else '(no hooks yet)'}")


@click.group("db")
def db_group():
    """Database migrations."""


@db_group.command("upgrade")
def db_upgrade():
    """Create or upgrade the database to the newest schema."""
    from . import dbmigrate

    app = _app()
    with app.app_context():
        dbmigrate.upgrade(app)
        click.echo("database at: " + ", ".join(sorted(dbmigrate.current(app))))


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@click.option("--branch", default="core", show_default=True)
def db_revision(message, branch):
    """Write a new autogenerated migration on a branch (developers)."""
    from . import dbmigrate

    app = _app()
    with app.app_context():
        dbmigrate.revision(app, message, branch)


def _core_commands():
    from .laws.cli import check, laws_group
    from .ops_cli import backup_cmd, doctor_cmd, restore_cmd
    from .people.cli import orgs_group, users_group

    return (sync, search, serve, demo, plugins_cmd, db_group, users_group, orgs_group,
            laws_group, check, doctor_cmd, backup_cmd, restore_cmd)


def build_cli(app) -> click.Group:
    """Return the ``kb`` group with core and plugin commands for ``app``."""
    from .pluginhost import collect

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.pass_context
    def cli(ctx):
        """履职学堂 (kb): manage content, search, accounts and the server."""
        ctx.obj = {"app": app}

    for command in _core_commands():
        cli.add_command(command)
    for command in collect(app.extensions["kb.pm"], "kb_cli_commands", key="name", app=app):
        if command.name in cli.commands:
            raise click.ClickException(f"plugin command {command.name!r} clashes with a core command")
        cli.add_command(command)
    return cli


def main(argv=None) -> None:
    from .app import ConfigurationError, create_app
    from .i18n import locale_from_env
    from .pluginhost import PluginError

    try:
        app = create_app()
    except (ConfigurationError, PluginError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
    # Messages made outside a request (row errors, sync problems) in the operator's language.
    app.config["CLI_LOCALE"] = locale_from_env()
    build_cli(app).main(args=argv, prog_name="kb")
