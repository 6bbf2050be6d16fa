"""Pages of the quizzes plugin: taking quizzes, results, 错题本, 每日一练, staff pages."""

from __future__ import annotations

import re
import secrets
from datetime import UTC
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from kb import db, ratelimit
from kb.authz import login_required, roles_required
from kb.models import utcnow

from . import service
from .content import lesson_url
from .grading import OPTION_KEYS, TYPE_LABELS
from .imports import (
    NO_EXPLANATION,
    ImportRefused,
    ImportResult,
    commit_import,
    export_xlsx,
    parse_file,
    template_xlsx,
)
from .models import Answer, Attempt, ImportDraft, Question, Quiz, ReviewCard

bp = Blueprint("quizzes", __name__, url_prefix="/quizzes", template_folder="templates",
               static_folder="static", static_url_path="/quizzes-static")

STAFF = ("county_staff", "admin")


# -- helpers ------------------------------------------------------------------------------------

def local(dt):
    if dt is None:
        return ""
    tz = ZoneInfo(current_app.config.get("TIMEZONE", "Asia/Shanghai"))
    return dt.replace(tzinfo=UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M")


@bp.app_template_filter("quiz_explanation")
def quiz_explanation(text: str) -> str:
    """A question's explanation; the fixed text stored for imports without one is translated."""
    return _("（原题库未提供解析）") if text == NO_EXPLANATION else text


@bp.app_template_filter("quiz_local")
def _local_filter(dt):
    return local(dt)


def display_options(question: Question, attempt: Attempt | None = None) -> list[dict]:
    """Options in the order this attempt shows them, lettered by position."""
    by_key = {o["key"]: o["text"] for o in question.options}
    order = (attempt.option_orders or {}).get(str(question.id)) if attempt else None
    keys = [k for k in (order or [o["key"] for o in question.options]) if k in by_key]
    return [{"letter": OPTION_KEYS[i], "key": k, "text": by_key[k]} for i, k in enumerate(keys)]


def answer_text(question: Question, values, attempt: Attempt | None = None) -> str:
    """A response or the right answer, as the person saw it."""
    values = list(values or [])
    if not values or values == [None]:
        return _("（未作答）")
    if question.type in ("single", "multiple"):
        opts = {o["key"]: o for o in display_options(question, attempt)}
        return _("；").join(f"{opts[k]['letter']}. {opts[k]['text']}" for k in
                        sorted(values, key=lambda k: opts[k]["letter"] if k in opts else k)
                        if k in opts) or _("（未作答）")
    if question.type == "truefalse":
        from .grading import parse_bool

        value = parse_bool(values[0])
        return _("对") if value else (_("错") if value is False else str(values[0]))
    return " / ".join(str(v) for v in values)


def _own_attempt(attempt_id: int) -> Attempt:
    attempt = db.session.get(Attempt, attempt_id)
    if attempt is None or attempt.user_id != current_user.id:
        abort(404)
    return attempt


def _visible_quiz(slug: str) -> Quiz:
    quiz = service.get_visible_quiz(current_user, slug)
    if quiz is None:
        abort(404)
    return quiz


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json" or request.is_json


def _responses_from_form(attempt: Attempt) -> dict[int, list[str]]:
    """Answers in a form post: ``question_id`` + ``r`` (one question) or ``r-<id>`` fields."""
    out: dict[int, list[str]] = {}
    data = request.get_json(silent=True) if request.is_json else None
    if data is not None:
        if not isinstance(data, dict):
            return out
        try:
            out[int(data.get("question_id"))] = data.get("response") or []
        except (TypeError, ValueError):
            pass
        return out
    qid = request.form.get("question_id", type=int)
    if qid is not None and "r" in request.form:
        out[qid] = request.form.getlist("r")
    elif qid is not None and request.form.get("touched"):
        out[qid] = []  # every checkbox unticked
    for name in request.form:
        m = re.fullmatch(r"r-(\d+)", name)
        if m:
            out[int(m.group(1))] = request.form.getlist(name)
    return {k: v for k, v in out.items() if k in (attempt.question_ids or [])}


# -- learner pages ------------------------------------------------------------------------------

@bp.get("/")
@login_required
def index():
    quizzes = db.session.scalars(service.visible_quizzes_query(current_user)
                                 .order_by(Quiz.origin, Quiz.title)).all()
    rows = []
    for quiz in quizzes:
        service.close_expired(current_user.id, quiz.id)
        attempts = service.attempts_of(current_user.id, quiz.id)
        rows.append({"quiz": quiz, "best": service.quiz_result(quiz, attempts),
                     "open": next((a for a in attempts if a.status == "open"), None),
                     "count": len(quiz.live_questions())})
    due = db.session.scalar(select(db.func.count()).select_from(ReviewCard).where(
        ReviewCard.user_id == current_user.id, ReviewCard.due <= utcnow()))
    return render_template("quizzes/index.html", rows=rows, due=due,
                           staff=current_user.role in STAFF)


@bp.get("/<quiz_slug>")
@login_required
def detail(quiz_slug):
    slug = quiz_slug
    quiz = _visible_quiz(slug)
    service.close_expired(current_user.id, quiz.id)
    attempts = service.attempts_of(current_user.id, quiz.id)
    return render_template("quizzes/detail.html", quiz=quiz, attempts=attempts,
                           counted=service.quiz_result(quiz, attempts),
                           open=next((a for a in attempts if a.status == "open"), None),
                           left=service.attempts_left(quiz, current_user.id),
                           count=min(quiz.draw or 10**6, len(quiz.live_questions())))


@bp.post("/<quiz_slug>/start")
@login_required
def start(quiz_slug):
    slug = quiz_slug
    quiz = _visible_quiz(slug)
    refused = ratelimit.take(ratelimit.QUIZ_START, current_user.id)
    if refused is not None:
        flash(ratelimit.message(refused), "error")
        return redirect(url_for("quizzes.detail", quiz_slug=slug))
    try:
        attempt = service.start_attempt(quiz, current_user)
    except service.QuizError as exc:
        flash(str(exc), "error")
        return redirect(url_for("quizzes.detail", quiz_slug=slug))
    return redirect(url_for("quizzes.take", attempt_id=attempt.id))


@bp.get("/attempt/<int:attempt_id>")
@login_required
def take(attempt_id):
    attempt = _own_attempt(attempt_id)
    if attempt.status == "open" and service.is_expired(attempt):
        service.finalize(attempt, expired=True)
        flash(_("作答时间已到，已按保存的答案交卷"), "error")
    if attempt.status != "open":
        return redirect(url_for("quizzes.result", attempt_id=attempt.id))
    quiz = attempt.quiz
    questions = {q.id: q for q in db.session.scalars(
        select(Question).where(Question.id.in_(attempt.question_ids or [-1])))}
    ordered = [questions[i] for i in attempt.question_ids if i in questions]
    saved = {a.question_id: a.response for a in db.session.scalars(
        select(Answer).where(Answer.attempt_id == attempt.id))}
    remaining = None
    if attempt.deadline is not None:
        remaining = max(0, int((attempt.deadline - utcnow()).total_seconds()))
    if quiz.one_per_screen:
        index = request.args.get("q", type=int)
        if index is None:  # resume at the first unanswered question
            index = next((n for n, q in enumerate(ordered) if not saved.get(q.id)), 0)
        index = max(0, min(index, len(ordered) - 1))
        shown = [(index, ordered[index])]
    else:
        index = None
        shown = list(enumerate(ordered))
    return render_template("quizzes/take.html", attempt=attempt, quiz=quiz, shown=shown,
                           ordered=ordered, saved=saved, index=index, remaining=remaining,
                           display_options=display_options, TYPE_LABELS=TYPE_LABELS)


@bp.post("/attempt/<int:attempt_id>/answer")
@login_required
def answer(attempt_id):
    attempt = _own_attempt(attempt_id)
    responses = _responses_from_form(attempt)
    error = None
    try:
        for qid, values in responses.items():
            service.save_answer(attempt, qid, values)
    except service.QuizError as exc:
        error = str(exc)
    if _wants_json():
        remaining = None
        if attempt.deadline is not None:
            remaining = max(0, int((attempt.deadline - utcnow()).total_seconds()))
        body = {"ok": error is None, "saved": sorted(responses), "remaining": remaining,
                "status": attempt.status}
        if error:
            body["error"] = error
        return jsonify(body), (200 if error is None else 409)
    if error:
        flash(error, "error")
        return redirect(url_for("quizzes.take", attempt_id=attempt.id))
    index = request.form.get("q", type=int)
    go = request.form.get("go", "")
    if go == "next" and index is not None:
        index += 1
    elif go == "prev" and index is not None:
        index -= 1
    elif go.isdigit():
        index = int(go)
    if index is None:
        flash(_("答案已保存"), "ok")
        return redirect(url_for("quizzes.take", attempt_id=attempt.id))
    return redirect(url_for("quizzes.take", attempt_id=attempt.id, q=index))


@bp.post("/attempt/<int:attempt_id>/submit")
@login_required
def submit(attempt_id):
    attempt = _own_attempt(attempt_id)
    if attempt.status == "open":
        try:
            for qid, values in _responses_from_form(attempt).items():
                service.save_answer(attempt, qid, values)
        except service.QuizError as exc:
            flash(str(exc), "error")
        if attempt.status == "open":
            service.finalize(attempt, expired=service.is_expired(attempt))
    return redirect(url_for("quizzes.result", attempt_id=attempt.id))


@bp.get("/attempt/<int:attempt_id>/result")
@login_required
def result(attempt_id):
    attempt = _own_attempt(attempt_id)
    if attempt.status == "open" and service.is_expired(attempt):
        service.finalize(attempt, expired=True)
    if attempt.status == "open":
        return redirect(url_for("quizzes.take", attempt_id=attempt.id))
    quiz = attempt.quiz
    questions = {q.id: q for q in db.session.scalars(
        select(Question).where(Question.id.in_(attempt.question_ids or [-1])))}
    answers = {a.question_id: a for a in db.session.scalars(
        select(Answer).where(Answer.attempt_id == attempt.id))}
    items = []
    for qid in attempt.question_ids:
        q = questions.get(qid)
        if q is None:
            continue
        a = answers.get(qid)
        items.append({"q": q, "credit": a.credit if a else 0.0,
                      "mine": answer_text(q, a.response if a else [], attempt),
                      "right": answer_text(q, q.answer, attempt),
                      "lesson_url": lesson_url(q.lesson)})
    attempts = service.attempts_of(current_user.id, quiz.id)
    return render_template("quizzes/result.html", attempt=attempt, quiz=quiz, items=items,
                           attempts=attempts, left=service.attempts_left(quiz, current_user.id),
                           TYPE_LABELS=TYPE_LABELS)


@bp.get("/review")
@login_required
def review():
    cards = db.session.scalars(
        select(ReviewCard).join(Question, Question.id == ReviewCard.question_id)
        .where(ReviewCard.user_id == current_user.id)
        .order_by(ReviewCard.flagged.desc(), ReviewCard.due)).all()
    now = utcnow()
    items = [{"card": c, "q": c.question, "due_now": c.due <= now,
              "mine": answer_text(c.question, c.last_response),
              "right": answer_text(c.question, c.question.answer),
              "lesson_url": lesson_url(c.question.lesson)} for c in cards]
    return render_template("quizzes/review.html", items=items, TYPE_LABELS=TYPE_LABELS)


@bp.get("/daily")
@login_required
def daily():
    row = service.daily_set(current_user)
    questions = {q.id: q for q in db.session.scalars(
        select(Question).where(Question.id.in_(row.question_ids or [-1])))}
    items = []
    for qid in row.question_ids:
        q = questions.get(qid)
        if q is None:
            continue
        done = (row.done or {}).get(str(qid))
        items.append({"q": q, "done": done,
                      "options": display_options(q),
                      "mine": answer_text(q, done["response"]) if done else "",
                      "right": answer_text(q, q.answer) if done else "",
                      "lesson_url": lesson_url(q.lesson) if done else ""})
    return render_template("quizzes/daily.html", items=items, daily=row, TYPE_LABELS=TYPE_LABELS)


@bp.post("/daily/answer")
@login_required
def daily_answer():
    row = service.daily_set(current_user)
    qid = request.form.get("question_id", type=int)
    if qid is None:
        flash(_("请先选择答案"), "error")
        return redirect(url_for("quizzes.daily"))
    try:
        outcome = service.daily_answer(current_user, row, qid, request.form.getlist("r"))
        flash(_("回答正确") if outcome["correct"] else _("回答错误，已加入错题本"),
              "ok" if outcome["correct"] else "error")
    except service.QuizError as exc:
        flash(str(exc), "error")
    return redirect(url_for("quizzes.daily") + f"#q-{qid}")


# -- staff pages --------------------------------------------------------------------------------

def _managed_quiz(slug: str) -> Quiz:
    quiz = db.session.scalar(service.managed_quizzes_query(current_user).where(Quiz.slug == slug))
    if quiz is None:
        abort(404)
    return quiz


def _county_id() -> int | None:
    return None if current_user.role == "admin" else current_user.org_unit_id


@bp.get("/admin/")
@roles_required(*STAFF)
def admin():
    quizzes = db.session.scalars(service.managed_quizzes_query(current_user)
                                 .order_by(Quiz.origin, Quiz.title)).all()
    prefix = service.staff_scope_prefix(current_user) or "/-none-/"
    missed = service.most_missed([q.id for q in quizzes], prefix, limit=10)
    return render_template("quizzes/admin.html", quizzes=quizzes, missed=missed,
                           lesson_url=lesson_url)


@bp.get("/admin/<quiz_slug>/stats")
@roles_required(*STAFF)
def stats(quiz_slug):
    slug = quiz_slug
    quiz = _managed_quiz(slug)
    prefix = service.staff_scope_prefix(current_user) or "/-none-/"
    return render_template("quizzes/stats.html", quiz=quiz,
                           questions=service.question_stats(quiz, prefix),
                           townships=service.pass_rate_by_township(quiz, prefix),
                           missed=service.most_missed([quiz.id], prefix),
                           lesson_url=lesson_url, TYPE_LABELS=TYPE_LABELS)


@bp.get("/admin/<quiz_slug>/export.xlsx")
@roles_required(*STAFF)
def export(quiz_slug):
    slug = quiz_slug
    quiz = _managed_quiz(slug)
    return Response(export_xlsx(quiz), headers={
        "Content-Disposition": f"attachment; filename={quiz.slug}.xlsx"},
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.get("/admin/template.xlsx")
@roles_required(*STAFF)
def template():
    return Response(template_xlsx(), headers={
        "Content-Disposition": "attachment; filename=quiz-template.xlsx"},
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,60}$")


@bp.route("/admin/import", methods=["GET", "POST"])
@roles_required(*STAFF)
def import_upload():
    if request.method == "GET":
        return render_template("quizzes/import.html", preview=None)
    upload = request.files.get("file")
    slug = (request.form.get("slug") or "").strip().lower()
    title = (request.form.get("title") or "").strip()[:200]
    if upload is None or not upload.filename:
        flash(_("请选择要导入的文件"), "error")
        return render_template("quizzes/import.html", preview=None), 400
    if not _SLUG.match(slug):
        flash(_("题库地址只能用小写字母、数字和 -（例如 county-2026-exam）"), "error")
        return render_template("quizzes/import.html", preview=None), 400
    refused = ratelimit.take(ratelimit.UPLOAD, current_user.id)
    if refused is not None:
        flash(ratelimit.message(refused), "error")
        return render_template("quizzes/import.html", preview=None), 429
    parsed = parse_file(upload.filename, upload.read())
    token = secrets.token_urlsafe(24)
    draft = ImportDraft(token=token, actor_id=current_user.id, org_unit_id=_county_id(),
                        filename=upload.filename[:255],
                        payload={"slug": slug, "title": title or slug, **parsed.to_payload()})
    db.session.add(draft)
    db.session.commit()
    return render_template("quizzes/import.html", preview=parsed, token=token, slug=slug,
                           title=title or slug, by_type=parsed.by_type(), TYPE_LABELS=TYPE_LABELS)


@bp.post("/admin/import/confirm")
@roles_required(*STAFF)
def import_confirm():
    token = request.form.get("token", "")
    draft = db.session.scalar(select(ImportDraft).where(ImportDraft.token == token))
    if draft is None or draft.actor_id != current_user.id or draft.committed_at is not None:
        abort(404)
    result = ImportResult.from_payload(draft.payload)
    try:
        n = commit_import(result, slug=draft.payload["slug"], title=draft.payload["title"],
                          org_unit_id=draft.org_unit_id,
                          valid_only=bool(request.form.get("valid_only")))
    except ImportRefused as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("quizzes.import_upload"))
    draft.committed_at = utcnow()
    from kb import audit

    audit.record("quizzes.import", None, _l("导入题库 %(slug)s：%(n)s 题", slug=draft.payload["slug"], n=n),
                 filename=draft.filename, by_type=result.by_type())
    db.session.commit()
    flash(_("已导入 %(n)s 道题", n=n), "ok")
    return redirect(url_for("quizzes.admin"))


def _int_field(name, lo, hi, errors, *, optional=True):
    raw = (request.form.get(name) or "").strip()
    if raw == "" and optional:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        errors.append(_("%(name)s 应是 %(lo)s–%(hi)s 之间的整数", name=name, lo=lo, hi=hi))
        return None
    return value


@bp.route("/admin/<quiz_slug>/settings", methods=["GET", "POST"])
@roles_required(*STAFF)
def settings(quiz_slug):
    """Settings of an imported bank (a shipped quiz is configured in its YAML file)."""
    quiz = _managed_quiz(quiz_slug)
    if quiz.origin != "import" or (current_user.role != "admin"
                                   and quiz.org_unit_id != current_user.org_unit_id):
        abort(404)
    errors: list[str] = []
    if request.method == "POST":
        title = (request.form.get("title") or "").strip()[:200]
        if not title:
            errors.append(_("请填写测验名称"))
        pass_score = _int_field("pass_score", 0, 100, errors, optional=False)
        time_limit = _int_field("time_limit_minutes", 1, 600, errors)
        attempts = _int_field("attempts", 1, 100, errors)
        draw = _int_field("draw", 1, 1000, errors)
        grading = request.form.get("grading", "best")
        if grading not in ("best", "last"):
            errors.append(_("计分方式不对"))
        if not errors:
            quiz.title, quiz.pass_score, quiz.time_limit_minutes = title, pass_score, time_limit
            quiz.attempts_allowed, quiz.draw, quiz.grading = attempts, draw, grading
            quiz.shuffle_options = bool(request.form.get("shuffle_options"))
            quiz.one_per_screen = bool(request.form.get("one_per_screen"))
            quiz.show_after = "score" if request.form.get("show_after") == "score" else "answers"
            from kb import audit

            audit.record("quizzes.settings", None, _l("修改测验设置 %(slug)s", slug=quiz.slug),
                         quiz=quiz.slug, pass_score=pass_score, time_limit=time_limit)
            db.session.commit()
            flash(_("设置已保存"), "ok")
            return redirect(url_for("quizzes.admin"))
    return render_template("quizzes/settings.html", quiz=quiz, errors=errors), (400 if errors else 200)
