"""Law library pages and the article preview API."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from flask import Blueprint, abort, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy import select

from .. import ratelimit
from ..authz import public, roles_required
from ..extensions import db
from ..models import Law, LawArticle

bp = Blueprint("laws", __name__)


@bp.get("/laws")
@public
def index():
    q = request.args.get("q", "").strip()[:100]
    query = select(Law).where(Law.is_current.is_(True)).order_by(Law.category, Law.slug)
    laws = db.session.scalars(query).all()
    if q:
        laws = [law for law in laws if q in law.title or q in law.slug]
    groups: dict[str, list[Law]] = {}
    for law in laws:
        groups.setdefault(law.category or "", []).append(law)  # "": shown as 其他 (other)
    counts = {law_id: n for law_id, n in db.session.execute(
        select(LawArticle.law_id, db.func.count()).group_by(LawArticle.law_id))}
    return render_template("laws/index.html", groups=groups, q=q, counts=counts)


def _version(slug: str) -> tuple[Law, list[Law]]:
    from .library import ALIASES, normalize_name

    key = normalize_name(slug)
    slug = ALIASES.get(key, key)
    versions = db.session.scalars(select(Law).where(Law.slug == slug)
                                  .order_by(Law.version_date.desc())).all()
    if not versions:
        abort(404)
    wanted = request.args.get("v")
    if wanted:
        try:
            day = date.fromisoformat(wanted)
        except ValueError:
            abort(404)
        law = next((v for v in versions if v.version_date == day), None)
        if law is None:
            abort(404)
    else:
        law = next((v for v in versions if v.is_current), versions[0])
    return law, versions


@bp.get("/laws/<law_slug>")
@public
def law(law_slug):
    law, versions = _version(law_slug)
    return render_template("laws/law.html", law=law, versions=versions)


@bp.get("/api/v1/laws/<law_slug>/articles/<article>")
@public
def article_api(law_slug, article):
    law, _versions = _version(law_slug)
    label = article
    article = next((a for a in law.articles if a.label == label), None)
    if article is None:
        abort(404)
    return jsonify({"law": law.slug, "title": law.title, "label": article.label,
                    "chapter": article.chapter, "text": article.text,
                    "version_date": law.version_date.isoformat() if law.version_date else None,
                    "current": law.is_current,
                    "url": f"/laws/{law.slug}" + ("" if law.is_current else f"?v={law.version_date}")
                    + f"#{article.label}"})


@bp.route("/admin/laws", methods=["GET", "POST"])
@roles_required("admin")
def upload():
    """Let an admin import law files (.md, .txt, .docx) from the browser."""
    from flask import flash, redirect, url_for
    from flask_babel import gettext as _
    from flask_babel import lazy_gettext as _l
    from flask_wtf import FlaskForm
    from flask_wtf.file import FileField, FileRequired

    from .. import audit
    from ..i18n import join_list
    from .library import ImportResult, bump_library_version, category_of, import_law, parse_file
    from .parse import LawParseError

    class UploadForm(FlaskForm):
        file = FileField(_("法律文本（.md / .txt / .docx）"), validators=[FileRequired()])

    form = UploadForm()
    result = None
    submitted = form.validate_on_submit()
    refused = ratelimit.take(ratelimit.UPLOAD, current_user.id) if submitted else None
    if refused is not None:
        flash(ratelimit.message(refused), "error")
    elif submitted:
        upload = form.file.data
        name = upload.filename or "upload.txt"
        data = upload.read()
        result = ImportResult()
        try:
            parsed = parse_file(name, data)
            if not parsed.articles:
                raise LawParseError("no articles (第X条) found")
            import_law(parsed, name, data, category_of(Path(name)), result)
            bump_library_version()
            audit.record("law.import", None, _l("导入法律文本 %(name)s", name=name), imported=result.imported)
            db.session.commit()
            from flask import current_app

            from .cli import update_index

            update_index(current_app, result)
            flash(_("已导入：%(names)s。运行 kb sync 后课程中的引用会链接到新文本。",
                    names=join_list(result.imported or result.unchanged)), "info")
            return redirect(url_for("laws.upload"))
        except LawParseError as exc:
            db.session.rollback()
            flash(_("%(name)s 无法导入：%(error)s", name=name, error=str(exc)), "error")
    laws = db.session.scalars(select(Law).order_by(Law.slug, Law.version_date)).all()
    return render_template("laws/upload.html", form=form, laws=laws), 429 if refused else 200
