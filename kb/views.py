"""Core pages: home, course, lesson, search, preferences, health."""

from __future__ import annotations

import time

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import text

from . import default_hooks, get_catalog, plugin_manager, search_index
from .authz import public
from .extensions import db

bp = Blueprint("core", __name__)

FONT_COOKIE = "kb_font"


def can_view(obj) -> bool:
    """Ask the plugins (core rule last) whether the current user may see ``obj``."""
    return bool(plugin_manager().hook.kb_can_view(user=current_user, obj=obj))


def _only_core_can_view() -> bool:
    """True when no plugin implements ``kb_can_view``: the core's audience rule decides alone."""
    return all(impl.plugin is default_hooks for impl in plugin_manager().hook.kb_can_view.get_hookimpls())


def _role_key():
    """What the core's audience rule looks at: the role, with both staff roles seeing all."""
    role = getattr(current_user, "role", None)
    return "__staff__" if role in ("admin", "county_staff") else role


class _VisibleLessons:
    """Per worker: each course's lessons visible to a role, for one catalog version.

    Used only while the core's rule is the only ``kb_can_view``: it depends on the lesson's
    audience and the user's role alone, so the list is the same for every user of a role.
    """

    def __init__(self):
        self._catalog = None
        self._lists: dict = {}

    def get(self, catalog, course, role):
        if self._catalog is not catalog:  # a reloaded catalog: start afresh
            self._lists = {}
            self._catalog = catalog
        key = (course.slug, role)
        hit = self._lists.get(key)
        if hit is None:
            staff = role == "__staff__"
            lessons = tuple(les for les in course.lessons
                            if not les.audience or staff or role in les.audience)
            hit = (lessons, {les.key: i for i, les in enumerate(lessons)})
            self._lists[key] = hit
        return hit


def _worker_cache(name: str, factory):
    """This app's per-worker cache ``name`` (made on first use)."""
    cache = current_app.extensions.get(name)
    if cache is None:
        cache = current_app.extensions.setdefault(name, factory())
    return cache


def _visible_with_index(course, cat=None):
    """(visible lessons of ``course``, {lesson key: index}) for the current user."""
    if _only_core_can_view():
        return _worker_cache("kb.visible_lessons", _VisibleLessons).get(
            cat or get_catalog(), course, _role_key())
    lessons = tuple(lesson for lesson in course.lessons if can_view(lesson))
    return lessons, {les.key: i for i, les in enumerate(lessons)}


def visible_lessons(course):
    return list(_visible_with_index(course)[0])


@bp.get("/")
@public
def home():
    cat = get_catalog()
    courses = [(c, visible_lessons(c)) for c in cat.courses]
    return render_template("core/home.html", courses=[(c, ls) for c, ls in courses if ls])


@bp.get("/courses/<course_slug>")
@public
def course(course_slug):
    course = get_catalog().course(course_slug)
    if course is None:
        abort(404)
    lessons = visible_lessons(course)
    if not lessons and course.lessons:
        abort(404)
    return render_template("core/course.html", course=course, lessons=lessons)


@bp.get("/courses/<course_slug>/<lesson_slug>")
@public
def lesson(course_slug, lesson_slug):
    cat = get_catalog()
    lesson = cat.lesson(course_slug, lesson_slug)
    if lesson is None or not can_view(lesson):
        abort(404)
    course = cat.course(course_slug)
    lessons, index = _visible_with_index(course, cat)
    i = index[lesson.key]
    prev_lesson = lessons[i - 1] if i > 0 else None
    next_lesson = lessons[i + 1] if i + 1 < len(lessons) else None
    article, pager, fragment_key = _lesson_fragments(cat, course, lesson, prev_lesson, next_lesson,
                                                     i + 1, len(lessons))
    page = dict(course=course, lesson=lesson, prev_lesson=prev_lesson, next_lesson=next_lesson,
                position=i + 1, count=len(lessons))
    return _lesson_page(cat, fragment_key, page, article, pager)


_PANEL = Markup('<section class="panel card" id="panel-{key}">\n  <h2>{title}</h2>\n  {html}\n'
                '</section>\n')


def panels_html(panels) -> Markup:
    """The lesson panels' boxes (``Panel.html`` is the plugin's safe HTML; key and title are
    escaped)."""
    return Markup("").join(_PANEL.format(key=p.key, title=p.title, html=Markup(p.html))
                           for p in panels)


def _lesson_page(cat, fragment_key, page, article, pager):
    """A lesson page: a shell rendered once per everything it is made of, filled per request.

    The plugins' hooks are asked on every request (nav items, lesson panels, page assets). The
    shell's key is the cached article's key (lesson, content, place, locale, URL prefix), the
    nav items and assets, whether someone is signed in, the font cookie and the URL; what
    differs between the people who share a shell is a hole filled per request: the article and
    pager (their own cache), the lesson panels, the reader's name and the CSRF token. A page
    with flashed messages is rendered as usual.
    """
    from .fragments import Shell, csrf_value, hashable, hole, worker_cache

    env = current_app.jinja_env.globals
    user = current_user._get_current_object()  # the hooks read it often: not through the proxy
    nav = tuple(env["slot"]("kb_nav_items", user=user))
    panels = env["slot"]("kb_lesson_panels", lesson=page["lesson"], user=user)
    assets = tuple(env["page_assets"]())
    signed_in = bool(user.is_authenticated)
    values = {"article": article, "pager": pager, "panels": lambda: panels_html(panels),
              "csrf": csrf_value, "name": lambda: user.name if signed_in else ""}
    key = ("lesson", fragment_key, signed_in, request.cookies.get(FONT_COOKIE) == "large",
           request.full_path, nav, assets)
    if "_flashes" in session or not hashable(key):  # a plugin's record holds something unhashable
        return render_template("core/lesson.html", nav_items=nav, page_assets_=assets,
                               lesson_article=article, lesson_pager=pager,
                               lesson_panels_html=panels_html(panels), **page)

    def render():
        return Shell(render_template(
            "core/lesson.html", nav_items=nav, page_assets_=assets, lesson_article=hole("article"),
            lesson_pager=hole("pager"), lesson_panels_html=hole("panels"),
            csrf_token=lambda: hole("csrf"), user_name_=hole("name"), **page))

    shell = worker_cache("kb.lesson_pages", 256, 4_000_000).get(key, render, generation=cat)
    return shell.fill(values)


def _lesson_fragments(cat, course, lesson, prev_lesson, next_lesson, position, count):
    from .fragments import page_key, worker_cache

    key = (lesson.key, lesson.content_hash, *page_key(), position, count,
           prev_lesson.key if prev_lesson else None, next_lesson.key if next_lesson else None)

    def render():
        ctx = dict(course=course, lesson=lesson, prev_lesson=prev_lesson, next_lesson=next_lesson,
                   position=position, count=count)
        return (Markup(render_template("core/_lesson_article.html", **ctx)),
                Markup(render_template("core/_lesson_pager.html", **ctx)))

    article, pager = worker_cache("kb.lesson_fragments").get(key, render, generation=cat)
    return article, pager, key


def _page_arg() -> int:
    try:
        return max(1, min(int(request.args.get("page", 1)), 1000))
    except ValueError:
        return 1


SEARCH_RETRY_AFTER = 30  # seconds; while the index is missing or damaged, until `kb sync`


def search_unavailable_message() -> tuple[str, str]:
    """Title and text shown while the search index is missing or damaged."""
    return (_("搜索暂时不可用"),
            _("搜索索引正在重建，请稍后再试。课程和其他页面照常可用。"))


def run_search(q: str, course: str | None, tag: str | None, page: int, per_page: int,
               kind: str | None = None):
    """Search as the current user: audience filtered in the index, then ``kb_can_view``."""
    role = getattr(current_user, "role", None) if current_user.is_authenticated else None
    staff = role in ("admin", "county_staff")
    results = search_index().search(q, course=course or None, tag=tag or None, page=page,
                                    per_page=per_page, kind=kind or None,
                                    audience=None if staff else (role or "__anonymous__"))
    cat = get_catalog()
    visible = []
    for hit in results.hits:
        lesson = cat.lesson(hit.course, hit.lesson) if hit.kind == "lesson" else None
        if hit.kind == "lesson" and (lesson is None or not can_view(lesson)):
            continue
        visible.append(hit)
    results.hits = visible
    return results


def related_laws(q: str, limit: int = 5) -> list:
    """Return the law articles most related to ``q``, national laws before provincial ones.

    Within the same number of matched query words, an article of a national law ranks before a
    provincial regulation's: a new cadre should meet 地方组织法第十九条 before a province's rule.
    """
    from sqlalchemy import select

    from .models import Law

    hits = search_index().search(q, kind="law_article", per_page=40).hits
    if not hits:
        return []
    national = set(db.session.scalars(select(Law.slug).where(~Law.source_name.startswith("DLC/"))))
    hits.sort(key=lambda h: (-(h.score // 1000), h.course not in national, -h.score))
    return hits[:limit]


SEARCH_KINDS = ("", "lesson", "law_article")


@bp.get("/search")
@public
def search():
    q = request.args.get("q", "").strip()
    course = request.args.get("course", "").strip()
    tag = request.args.get("tag", "").strip()
    kind = request.args.get("kind", "")
    kind = kind if kind in SEARCH_KINDS else ""
    results, laws = None, []
    if q:
        results = run_search(q, course, tag, _page_arg(), current_app.config["SEARCH_PER_PAGE"],
                             kind=kind or "lesson")
        if not kind and not course and not tag and results.page == 1:
            laws = related_laws(q)
    body = render_template("core/search.html", q=q, course=course, tag=tag, kind=kind,
                           results=results, laws=laws, courses=get_catalog().courses)
    if results is not None and results.index_missing:
        # The index is missing or damaged (docs/deploy.md): every other page still works.
        return body, 503, {"Retry-After": str(SEARCH_RETRY_AFTER)}
    return body


@bp.route("/prefs", methods=["GET", "POST"])
@public
def prefs():
    """Remember the reader's font size and language (works without JavaScript).

    The footer's switch is a GET form, so that pages need no CSRF token and therefore no session
    for anonymous readers (no Set-Cookie on every page, which also lets shared caches keep them).
    It only sets this browser's display preferences: no account data, nothing an attacker gains.
    A GET started from another site (``Sec-Fetch-Site``) changes nothing, and the answer is
    never stored. POST (with its CSRF token) keeps working.
    """
    form = request.form if request.method == "POST" else request.args
    target = form.get("next") or url_for("core.home")
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        target = url_for("core.home")
    response = make_response(redirect(target))
    response.headers["Cache-Control"] = "no-store"
    if request.method == "GET" and request.headers.get("Sec-Fetch-Site", "same-origin") not in (
            "same-origin", "none"):
        return response
    font = form.get("font")
    if font in ("normal", "large"):
        response.set_cookie(FONT_COOKIE, font, max_age=3600 * 24 * 365, samesite="Lax",
                            httponly=True, secure=request.is_secure)
    lang = form.get("lang")
    if lang in current_app.jinja_env.globals["LANGUAGES"]:
        session["lang"] = lang
    return response


@bp.get("/healthz")
@public
def healthz():
    """Report database and search index status (for load balancers and ``kb doctor``)."""
    status, code = {"status": "ok"}, 200
    started = time.perf_counter()
    try:
        db.session.execute(text("SELECT 1"))
        status["database"] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
    except Exception as exc:  # report, don't raise: this endpoint must always answer
        db.session.rollback()
        status["database"] = {"ok": False, "error": type(exc).__name__}
        status["status"], code = "error", 503
    try:
        index_status = search_index().status()
        status["index"] = {"ok": bool(index_status.get("exists")), **index_status}
        status["index"].pop("path", None)
        status["index"].pop("problem", None)  # names files: for the log and `kb doctor`
        if not index_status.get("exists"):
            status["status"] = "degraded" if code == 200 else status["status"]
    except Exception as exc:
        status["index"] = {"ok": False, "error": type(exc).__name__}
        status["status"] = "degraded" if code == 200 else status["status"]
    return jsonify(status), code


def wants_json() -> bool:
    """Answer an error as JSON: the API, and requests made by the pages' scripts (a JSON
    body, or JSON preferred over HTML, e.g. the progress heartbeat and quiz answer saving)."""
    if request.path.startswith("/api/") or request.is_json:
        return True
    best = request.accept_mimetypes.best_match(("text/html", "application/json"))
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def register_error_handlers(app):
    def page(code, title, message):
        def handler(error):
            if wants_json():
                return jsonify({"error": title(), "message": message(), "status": code}), code
            # For a 500 or 503 the page itself can fail (it needs the database, which is down,
            # for the signed-in person and their nav): then once more as a signed-out visitor,
            # and at last as plain text rather than not at all.
            for as_visitor in (False, True):
                try:
                    if as_visitor:
                        from flask import g

                        from .extensions import login_manager

                        g._login_user = login_manager.anonymous_user()
                    return render_template("core/error.html", code=code, title=title(),
                                           message=message()), code
                except Exception:
                    if code not in (500, 503):
                        raise
                    from .app import discard_session

                    discard_session()
            return (f"{code} {title()}\n{message()}\n", code,
                    {"Content-Type": "text/plain; charset=utf-8"})
        return handler

    app.register_error_handler(403, page(403, lambda: _("无权访问"), lambda: _("您没有查看此页面的权限。")))
    app.register_error_handler(404, page(404, lambda: _("页面不存在"), lambda: _("您要找的页面不存在或已被移除。")))
    app.register_error_handler(400, page(400, lambda: _("请求无效"), lambda: _("请求无效或已过期，请返回重试。")))
    app.register_error_handler(500, page(500, lambda: _("服务器出错"), lambda: _("服务器暂时出错，请稍后再试。")))

    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    unavailable = page(503, lambda: _("服务暂时不可用"),
                       lambda: _("数据库暂时无法连接，请稍后再试。已保存的内容不会丢失。"))

    def database_down(error):
        """A lost database connection is a 503 with a clear page, not a stack trace."""
        from .app import discard_session

        app.logger.warning("database unavailable: %s", str(getattr(error, "orig", error) or
                                                            type(error).__name__).splitlines()[0])
        discard_session()  # the page below may query again (the user, the menu): afresh
        response = make_response(unavailable(error))
        response.headers["Retry-After"] = "5"
        return response

    for exc in (OperationalError, InterfaceError, PoolTimeout):
        app.register_error_handler(exc, database_down)


@bp.app_template_filter("with_hl")
def with_hl(url: str, q: str) -> str:
    """Add the searched words to a hit's URL so the lesson page can mark them."""
    from urllib.parse import urlencode

    from .search import analysis

    words = " ".join(dict.fromkeys(w for w in analysis.tokenize_words(q[:200]) if len(w) > 1))
    base, sep, fragment = url.partition("#")
    return f"{base}?{urlencode({'hl': words or q[:200]})}{sep}{fragment}"
