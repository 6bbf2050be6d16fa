"""``kb laws import|list`` and ``kb check``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlalchemy import select

from ..extensions import db
from ..models import Law


def _app():
    return click.get_current_context().find_root().obj["app"]


def update_index(app, result) -> None:
    """Replace the search documents of the laws an import changed."""
    from .. import searching
    from .library import law_article_documents

    index = searching.get_index(app)
    if not index.exists():
        return  # the next `kb sync` builds the whole index, laws included
    slugs = {slug for slug, _ in result.changed_keys | result.removed_keys}
    docs = []
    for slug in slugs:
        law = db.session.scalar(select(Law).where(Law.slug == slug, Law.is_current.is_(True)))
        if law is not None:
            docs.extend(law_article_documents(law))
    index.update_lessons(sorted(result.changed_keys | result.removed_keys), docs)
    from ..ops import stamp_index

    stamp_index(app)


@click.group("laws")
def laws_group():
    """The law library."""


@laws_group.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def laws_import(paths):
    """Import law texts (.md in the national database layout, .txt, .docx); keeps old versions."""
    from ..cli import ensure_database
    from .library import import_paths

    app = _app()
    with app.app_context():
        ensure_database(app)
        result = import_paths(list(paths))
        update_index(app, result)
    for error in result.errors:
        click.echo(error, err=True)
    click.echo(f"laws imported: {len(result.imported)}, unchanged: {len(result.unchanged)}, "
               f"superseded: {len(result.superseded)}, errors: {len(result.errors)}")
    if result.imported:
        click.echo("run `kb sync` to link citations in lessons to the new texts")
    if result.errors and not result.imported and not result.unchanged:
        sys.exit(1)


@laws_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def laws_list(as_json):
    """List the laws in the library (every version)."""
    app = _app()
    with app.app_context():
        rows = [{"slug": law.slug, "title": law.title, "version_date": law.version_date.isoformat()
                 if law.version_date else None, "current": law.is_current,
                 "articles": len(law.articles), "category": law.category}
                for law in db.session.scalars(select(Law).order_by(Law.slug, Law.version_date))]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        click.echo(f"{r['slug']:<40} {r['version_date'] or '-':<10} {r['articles']:>4} articles"
                   + ("" if r["current"] else "  (superseded)"))


@click.command("check")
@click.option("--courses", "courses_dir", type=click.Path(file_okay=False), help="Courses folder.")
def check(courses_dir):
    """List citations that do not resolve, and cited articles changed in a newer version."""
    from ..cli import ensure_database
    from .check import check_lessons

    app = _app()
    root = Path(courses_dir or app.config["COURSES_DIR"]).resolve()
    with app.app_context():
        ensure_database(app)
        problems = check_lessons(root)
    for p in problems:
        click.echo(str(p) + (" (warning)" if p.severity == "warning" else ""))
    errors = [p for p in problems if p.severity == "error"]
    click.echo(f"{len(errors)} errors, {len(problems) - len(errors)} warnings", err=True)
    if errors:
        sys.exit(1)
