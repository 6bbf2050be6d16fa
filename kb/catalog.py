"""The lesson catalog as each worker keeps it in memory.

Requests never touch the lesson tables: a worker loads the active courses and lessons (with
their pre-rendered HTML) once and reloads only when ``kb_meta.catalog_version`` changed, checked
at most every ``CATALOG_TTL`` seconds.

A catalog loaded without HTML (``_load(with_html=False)``, e.g. :func:`load_lessons` for
``kb sync``) fetches a lesson's HTML on first use of :attr:`LessonView.html` and keeps it in a
small per-worker LRU keyed by lesson id and content hash.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import quote

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import load_only

from .extensions import db
from .models import Course, KbMeta, Lesson


@dataclass(frozen=True)
class LessonView:
    id: int
    course_slug: str
    course_title: str
    slug: str
    position: int
    title: str
    summary: str
    minutes: int
    tags: tuple[str, ...]
    audience: tuple[str, ...]
    sources: tuple[str, ...]
    updated: date | None
    toc: tuple[dict, ...]
    sections: tuple[dict, ...]
    content_hash: str
    # The HTML when the catalog holds it; otherwise ``html`` fetches it on first use.
    html_text: Markup | None = field(default=None, repr=False, compare=False)

    @property
    def html(self) -> Markup:
        """The lesson's rendered HTML (held, else from the per-worker LRU, else one query)."""
        if self.html_text is not None:
            return self.html_text
        return lesson_html(self.id, self.content_hash)

    @property
    def url(self) -> str:
        return f"/courses/{quote(self.course_slug)}/{quote(self.slug)}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.course_slug, self.slug)


@dataclass(frozen=True)
class CourseView:
    id: int
    slug: str
    title: str
    summary: str
    order: int
    required_for: tuple[str, ...]
    intro_html: Markup
    lessons: tuple[LessonView, ...] = field(default=())
    audience: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"/courses/{quote(self.slug)}"

    @property
    def minutes(self) -> int:
        return sum(lesson.minutes for lesson in self.lessons)


class Catalog:
    """Active courses in order, with lookups and previous/next navigation."""

    def __init__(self, courses: list[CourseView], version: str):
        self.version = version
        self.courses = courses
        self._courses = {c.slug: c for c in courses}
        self._lessons = {(les.course_slug, les.slug): les for c in courses for les in c.lessons}
        self._by_id = {les.id: les for les in self._lessons.values()}

    def course(self, slug: str) -> CourseView | None:
        return self._courses.get(slug)

    def lesson(self, course_slug: str, slug: str) -> LessonView | None:
        return self._lessons.get((course_slug, slug))

    def lesson_by_id(self, lesson_id: int) -> LessonView | None:
        return self._by_id.get(lesson_id)

    def lessons(self) -> list[LessonView]:
        return [les for c in self.courses for les in c.lessons]

    def neighbours(self, lesson: LessonView) -> tuple[LessonView | None, LessonView | None]:
        lessons = self._courses[lesson.course_slug].lessons
        i = lessons.index(lesson)
        return (lessons[i - 1] if i > 0 else None, lessons[i + 1] if i + 1 < len(lessons) else None)


HTML_CACHE_SIZE = 64  # lessons' HTML kept per worker (most recently shown)


class _HtmlCache:
    """A small thread-safe LRU of lesson HTML keyed by ``"<lesson id>:<content hash>"``."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, Markup] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Markup | None:
        with self._lock:
            html = self._items.get(key)
            if html is not None:
                self._items.move_to_end(key)
            return html

    def put(self, key: str, html: Markup) -> None:
        with self._lock:
            self._items[key] = html
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def lesson_html(lesson_id: int, content_hash: str) -> Markup:
    """Return a lesson's stored HTML, from this worker's LRU when it is there."""
    from flask import current_app

    cache = current_app.extensions["kb.catalog"].html_cache
    key = f"{lesson_id}:{content_hash}"  # the HTML also depends on the course, hence the id
    html = cache.get(key)
    if html is not None:
        return html
    row = db.session.execute(
        select(Lesson.html, Lesson.content_hash).where(Lesson.id == lesson_id)
    ).first()
    if row is None:
        return Markup("")
    html = Markup(row.html or "")
    # A catalog older than the row still gets the row's HTML, cached under the row's hash.
    cache.put(f"{lesson_id}:{row.content_hash}", html)
    return html


# Everything the catalog keeps of a lesson except the HTML (never the links).
_VIEW_COLUMNS = (Lesson.id, Lesson.course_id, Lesson.slug, Lesson.position, Lesson.title,
                 Lesson.summary, Lesson.minutes, Lesson.tags, Lesson.audience, Lesson.sources,
                 Lesson.updated, Lesson.toc, Lesson.sections, Lesson.content_hash, Lesson.is_active)


def _load(keys: Iterable[tuple[str, str]] | None = None, with_html: bool = True) -> Catalog:
    """Load the active catalog; with ``keys``, only those (course, lesson) pairs (and their courses).

    Without ``with_html`` the lessons' HTML is left in the database until it is used.
    """
    meta = db.session.get(KbMeta, "catalog_version")
    version = meta.value if meta else "0"
    course_q = select(Course).where(Course.is_active.is_(True)).order_by(Course.order, Course.slug)
    lesson_q = (select(Lesson).where(Lesson.is_active.is_(True)).options(load_only(*_VIEW_COLUMNS, *((Lesson.html,) if with_html else ())))
                .order_by(Lesson.position, Lesson.slug))
    wanted = None
    if keys is not None:
        wanted = set(keys)
        course_q = course_q.where(Course.slug.in_({c for c, _ in wanted} or {""}))
    courses = db.session.scalars(course_q).all()
    if wanted is not None:
        lesson_q = lesson_q.where(Lesson.course_id.in_([c.id for c in courses] or [0]),
                                  Lesson.slug.in_({s for _, s in wanted} or {""}))
    lessons = db.session.scalars(lesson_q).all()
    slugs = {c.id: c.slug for c in courses}
    by_course: dict[int, list[Lesson]] = {}
    for lesson in lessons:
        if wanted is not None and (slugs.get(lesson.course_id), lesson.slug) not in wanted:
            continue
        by_course.setdefault(lesson.course_id, []).append(lesson)
    out = []
    for c in courses:
        views = tuple(
            LessonView(
                id=les.id, course_slug=c.slug, course_title=c.title, slug=les.slug,
                position=les.position, title=les.title, summary=les.summary, minutes=les.minutes,
                tags=tuple(les.tags or ()), audience=tuple(les.audience or ()),
                sources=tuple(les.sources or ()), updated=les.updated,
                toc=tuple(les.toc or ()), sections=tuple(les.sections or ()),
                content_hash=les.content_hash,
                html_text=Markup(les.html) if with_html else None,
            )
            for les in by_course.get(c.id, [])
        )
        out.append(CourseView(
            id=c.id, slug=c.slug, title=c.title, summary=c.summary, order=c.order,
            required_for=tuple(c.required_for or ()), intro_html=Markup(c.intro_html),
            lessons=views,
        ))
    return Catalog(out, version)


def load_lessons(keys: Iterable[tuple[str, str]]) -> Catalog:
    """A catalog of just these active lessons (what ``kb sync`` needs to update the index)."""
    return _load(keys, with_html=False)


class CatalogCache:
    """Holds one worker's catalog; thread-safe; reloads when the version in the DB moves."""

    def __init__(self, ttl: float, html_cache_size: int = HTML_CACHE_SIZE):
        self.ttl = ttl
        self.html_cache = _HtmlCache(html_cache_size)
        self._catalog: Catalog | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def get(self) -> Catalog:
        now = time.monotonic()
        catalog = self._catalog
        if catalog is not None and now - self._checked < self.ttl:
            return catalog
        with self._lock:
            if self._catalog is not None and now - self._checked < self.ttl:
                return self._catalog
            meta = db.session.get(KbMeta, "catalog_version")
            version = meta.value if meta else "0"
            if self._catalog is None or self._catalog.version != version:
                self._catalog = _load()
            self._checked = now
            return self._catalog

    def invalidate(self) -> None:
        with self._lock:
            self._catalog = None
