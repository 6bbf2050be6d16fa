"""The lesson catalog as each worker keeps it in memory.

Requests never touch the lesson tables: a worker loads the active courses and lessons (with
their pre-rendered HTML) once and reloads only when ``kb_meta.catalog_version`` changed, checked
at most every ``CATALOG_TTL`` seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import quote

from markupsafe import Markup
from sqlalchemy import select

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
    html: Markup
    toc: tuple[dict, ...]
    sections: tuple[dict, ...]
    content_hash: str

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


def _load() -> Catalog:
    meta = db.session.get(KbMeta, "catalog_version")
    version = meta.value if meta else "0"
    courses = db.session.scalars(
        select(Course).where(Course.is_active.is_(True)).order_by(Course.order, Course.slug)
    ).all()
    lessons = db.session.scalars(
        select(Lesson).where(Lesson.is_active.is_(True)).order_by(Lesson.position, Lesson.slug)
    ).all()
    by_course: dict[int, list[Lesson]] = {}
    for lesson in lessons:
        by_course.setdefault(lesson.course_id, []).append(lesson)
    out = []
    for c in courses:
        views = tuple(
            LessonView(
                id=les.id, course_slug=c.slug, course_title=c.title, slug=les.slug,
                position=les.position, title=les.title, summary=les.summary, minutes=les.minutes,
                tags=tuple(les.tags or ()), audience=tuple(les.audience or ()),
                sources=tuple(les.sources or ()), updated=les.updated, html=Markup(les.html),
                toc=tuple(les.toc or ()), sections=tuple(les.sections or ()),
                content_hash=les.content_hash,
            )
            for les in by_course.get(c.id, [])
        )
        out.append(CourseView(
            id=c.id, slug=c.slug, title=c.title, summary=c.summary, order=c.order,
            required_for=tuple(c.required_for or ()), intro_html=Markup(c.intro_html),
            lessons=views,
        ))
    return Catalog(out, version)


class CatalogCache:
    """Holds one worker's catalog; thread-safe; reloads when the version in the DB moves."""

    def __init__(self, ttl: float):
        self.ttl = ttl
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
