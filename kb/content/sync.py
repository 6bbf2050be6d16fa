"""``kb sync``: load ``courses/`` into the catalog tables, skipping files whose hash is unchanged.

One broken file never stops the others: each problem is recorded as ``path:line: message`` in
``content_problem`` (so unchanged files keep reporting theirs) and in the returned report.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select
from sqlalchemy.orm import load_only

from ..extensions import db
from ..i18n import storable, stored_text
from ..models import ContentProblem, Course, KbMeta, Lesson, utcnow
from ..records import SyncReport
from . import frontmatter
from .files import DecodeError, read_text
from .render import RENDER_VERSION, lesson_slug, render_markdown

log = logging.getLogger(__name__)

COURSE_FILE = "_course.md"


def file_hash(raw: bytes, extra: str = "") -> str:
    return hashlib.sha256(RENDER_VERSION.encode() + extra.encode() + b"\0" + raw).hexdigest()


class CourseSyncer:
    """Sync one courses directory into the database for one app."""

    def __init__(self, root: Path, report: SyncReport, extensions: list | None = None,
                 progress: Callable[[str], None] | None = None, force: bool = False):
        self.root = Path(root)
        self.report = report
        self.extensions = extensions or []
        self.progress = progress or (lambda path: None)
        self.force = force
        self._touched_paths: set[str] = set()
        self._moved = False  # an unchanged lesson got a new position
        from ..laws.library import LawIndex, library_version

        # Plugin Markdown extensions and the law library (citation links) change the output:
        # re-render when either changes.
        self._signature = ",".join(sorted(f"{type(e).__module__}.{type(e).__qualname__}"
                                          for e in self.extensions)) + f";laws={library_version()}"
        self._laws = LawIndex()

    # -- helpers ---------------------------------------------------------------------------
    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def _problems_for(self, rel: str, problems: list[tuple[int, str, str]]) -> None:
        db.session.execute(
            delete(ContentProblem).where(ContentProblem.path == rel, ContentProblem.severity != "link")
        )
        for line, message, severity in problems:
            db.session.add(_problem_row(rel, line, message, severity))

    # -- main ------------------------------------------------------------------------------
    def run(self) -> SyncReport:
        courses = {c.slug: c for c in db.session.scalars(select(Course))}
        seen_courses: set[str] = set()
        if self.root.is_dir():
            for course_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
                if course_dir.name.startswith((".", "_")):
                    continue
                seen_courses.add(course_dir.name)
                self._sync_course(course_dir, courses.get(course_dir.name))
        else:
            self.report.problem(self.root, 0, _l("课程目录不存在"), "warning")

        for slug, course in courses.items():
            if slug not in seen_courses and course.is_active:
                course.is_active = False
                self.report.count("removed", "course")
                for lesson in _light_lessons(course):
                    if lesson.is_active:
                        lesson.is_active = False
                        self.report.count("removed", "lesson")
                        self.report.changed_lessons.add((slug, lesson.slug))
        db.session.flush()
        # Forget problems of files that no longer exist (only their paths are read here).
        stale = [
            path for path in db.session.scalars(
                select(ContentProblem.path).where(ContentProblem.severity != "link").distinct()
            )
            if path not in self._touched_paths
        ]
        for i in range(0, len(stale), 500):
            db.session.execute(delete(ContentProblem).where(
                ContentProblem.severity != "link", ContentProblem.path.in_(stale[i:i + 500])))
        changed = bool(self.report.changed_lessons or any(self.report.added.values()) or any(
            self.report.updated.values()) or any(self.report.removed.values()))
        # Links only change when some lesson (or course) changed: otherwise the stored link
        # problems are still right.
        if changed or self.force or self._moved:
            self._check_links()
        if changed or self._moved:
            bump_catalog_version()  # workers reload their catalog (order and paths changed)
        db.session.commit()
        self.report.problems = _stored_problems()
        return self.report

    def _sync_course(self, course_dir: Path, course: Course | None) -> None:
        slug = course_dir.name
        meta_path = course_dir / COURSE_FILE
        rel = self.rel(meta_path)
        self._touched_paths.add(rel)
        self.progress(rel)
        raw = meta_path.read_bytes() if meta_path.is_file() else b""
        digest = file_hash(raw, self._signature)
        if course is None:
            course = Course(slug=slug, title=slug)
            db.session.add(course)
            self.report.count("added", "course")
            changed = True
        else:
            changed = self.force or course.content_hash != digest or not course.is_active
            if changed:
                self.report.count("updated", "course")
            else:
                self.report.count("unchanged", "course")
        if changed:
            problems: list[tuple[int, str, str]] = []
            if not meta_path.is_file():
                problems.append((0, _l("缺少 %(file)s（课程标题暂用文件夹名）", file=COURSE_FILE), "error"))
                course.title, course.summary, course.order, course.required_for = slug, "", 0, []
                course.intro_html = ""
            else:
                self._apply_course_meta(course, meta_path, problems)
            course.content_hash = digest
            course.source_path = rel
            course.is_active = True
            course.synced_at = utcnow()
            self._problems_for(rel, problems)
        db.session.flush()

        lessons = {lesson.slug: lesson for lesson in _light_lessons(course)}
        seen: dict[str, str] = {}
        for path in sorted(p for p in course_dir.iterdir() if p.is_file()):
            if path.name == COURSE_FILE or path.name.startswith("."):
                continue
            lrel = self.rel(path)
            self._touched_paths.add(lrel)
            parsed = lesson_slug(path.name)
            if not path.name.endswith(".md"):
                continue
            if parsed is None:
                self._problems_for(lrel, [(0, _l("已忽略：课文文件名应为 NN-slug.md（例如 01-intro.md）"), "warning")])
                continue
            position, lslug = parsed
            if lslug in seen:
                self._problems_for(lrel, [(1, _l("课文地址 %(slug)s 重复：%(other)s 已在使用，本文件已跳过", slug=repr(lslug), other=seen[lslug]), "error")])
                continue
            seen[lslug] = lrel
            self.progress(lrel)
            self._sync_lesson(course, path, lrel, position, lslug, lessons.get(lslug))

        for lslug, lesson in lessons.items():
            if lslug not in seen and lesson.is_active:
                lesson.is_active = False
                self.report.count("removed", "lesson")
                self.report.changed_lessons.add((slug, lslug))

    def _apply_course_meta(self, course: Course, path: Path, problems) -> None:
        try:
            decoded = read_text(path)
        except DecodeError as exc:
            problems.append((0, exc.args[0], "error"))
            return
        if decoded.note:
            problems.append((1, decoded.note, "warning"))
        fm = frontmatter.split(decoded.text)
        clean = frontmatter.validate(fm, "course") if not fm.fatal else {}
        for e in fm.errors:
            problems.append((e.line, e.message, "error"))
        course.title = clean.get("title") or course.slug
        course.summary = clean.get("summary", "")
        course.order = clean.get("order", 0)
        course.required_for = clean.get("required_for", [])
        course.intro_html = render_markdown(
            fm.body, course=course.slug, line_offset=fm.body_line, extensions=self.extensions
        ).html if fm.body.strip() else ""

    def _sync_lesson(self, course: Course, path: Path, rel: str, position: int, slug: str,
                     lesson: Lesson | None) -> None:
        raw = path.read_bytes()
        digest = file_hash(raw, self._signature)
        if lesson is not None and not self.force and lesson.content_hash == digest and lesson.is_active:
            if lesson.position != position or lesson.source_path != rel:
                # Renumbered (01-x.md → 03-x.md): same content, new place in the course.
                lesson.position = position
                lesson.source_path = rel
                self._moved = True
            self.report.count("unchanged", "lesson")
            return
        problems: list[tuple[int, str, str]] = []
        try:
            decoded = read_text(path)
        except DecodeError as exc:
            self._problems_for(rel, [(0, exc.args[0], "error")])
            self._deactivate(course, lesson)
            return
        if decoded.note:
            problems.append((1, decoded.note, "warning"))
        fm = frontmatter.split(decoded.text)
        clean = frontmatter.validate(fm, "lesson") if not fm.fatal else {}
        problems.extend((e.line, e.message, "error") for e in fm.errors)
        if fm.fatal or "title" not in clean:
            problems.append((1, _l("本课文在问题修正前不会加载"), "error"))
            self._problems_for(rel, problems)
            self._deactivate(course, lesson)
            return
        if not fm.body.strip():
            problems.append((fm.body_line, _l("文件头之后没有正文"), "warning"))
        rendered = render_markdown(
            fm.body, course=course.slug, line_offset=fm.body_line, extensions=self.extensions
        )
        if not self._laws.empty:
            from ..laws.cite import link_citations

            rendered.html = link_citations(rendered.html, self._laws)
        if lesson is None:
            lesson = Lesson(course=course, slug=slug)
            db.session.add(lesson)
            self.report.count("added", "lesson")
        else:
            self.report.count("updated", "lesson")
        lesson.position = position
        lesson.title = clean["title"]
        lesson.summary = clean["summary"]
        lesson.minutes = clean["minutes"]
        lesson.tags = clean["tags"]
        lesson.audience = clean["audience"]
        lesson.sources = clean["sources"]
        lesson.updated = clean["updated"]
        lesson.html = rendered.html
        lesson.toc = rendered.toc
        lesson.sections = rendered.sections
        lesson.links = [link.__dict__ for link in rendered.links]
        lesson.source_path = rel
        lesson.content_hash = digest
        lesson.is_active = True
        lesson.synced_at = utcnow()
        self.report.changed_lessons.add((course.slug, slug))
        self._problems_for(rel, problems)

    def _deactivate(self, course: Course, lesson: Lesson | None) -> None:
        if lesson is not None and lesson.is_active:
            lesson.is_active = False
            lesson.content_hash = ""
            self.report.count("removed", "lesson")
            self.report.changed_lessons.add((course.slug, lesson.slug))

    def _check_links(self) -> None:
        """Check every link between lessons against the catalog as it now is."""
        db.session.execute(delete(ContentProblem).where(ContentProblem.severity == "link"))
        # Plain rows of the few columns needed (never the HTML or the sections).
        active = db.session.execute(
            select(Course.slug, Lesson.source_path, Lesson.toc, Lesson.links)
            .join(Course, Lesson.course_id == Course.id)
            .where(Lesson.is_active.is_(True))
            .order_by(Lesson.id)
        ).all()
        files = {(row.slug, Path(row.source_path).name): row for row in active}
        anchors: dict[str, set[str]] = {}
        for row in active:
            for link in row.links or []:
                target = files.get((link["target_course"], link["target_file"]))
                message = None
                if target is None:
                    message = _l("链接 %(href)s 失效：没有这篇课文", href=link["href"])
                elif link["anchor"]:
                    ids = anchors.get(target.source_path)
                    if ids is None:
                        ids = anchors[target.source_path] = {t["id"] for t in target.toc or ()}
                    if link["anchor"] not in ids:
                        message = _l("链接 %(href)s 失效：%(path)s 中没有小标题 #%(anchor)s", href=link["href"],
                                      anchor=link["anchor"], path=target.source_path)
                if message:
                    db.session.add(_problem_row(row.source_path, link["line"], message, "link"))


# The columns the change check reads; the heavy ones (html, toc, sections, links, ...) are
# loaded only when a lesson is actually re-rendered (assigning them needs no load).
_CHECK_COLUMNS = (Lesson.id, Lesson.course_id, Lesson.slug, Lesson.position, Lesson.content_hash,
                  Lesson.is_active, Lesson.source_path)


def _light_lessons(course: Course) -> list[Lesson]:
    """The course's lessons with only the columns the change check needs."""
    if course.id is None:
        return []
    return list(db.session.scalars(
        select(Lesson).where(Lesson.course_id == course.id).options(load_only(*_CHECK_COLUMNS))
    ))


def _stored_problems():
    from ..records import Problem

    rows = db.session.execute(
        select(ContentProblem.path, ContentProblem.line, ContentProblem.message,
               ContentProblem.message_i18n, ContentProblem.severity)
        .order_by(ContentProblem.path, ContentProblem.line)
    )
    return [
        Problem(r.path, r.line, stored_text(r.message_i18n, r.message),
                "warning" if r.severity == "warning" else "error")
        for r in rows
    ]


def _problem_row(path: str, line: int, message, severity: str) -> ContentProblem:
    """A problem to keep: its text in Chinese (the source language) with its msgid and
    parameters, so a later ``kb sync`` prints it in its operator's language."""
    text, spec = storable(message)
    return ContentProblem(path=path, line=line, message=text, message_i18n=spec, severity=severity)


def bump_catalog_version() -> None:
    """Tell every worker's in-memory catalog that lessons changed."""
    meta = db.session.get(KbMeta, "catalog_version")
    if meta is None:
        db.session.add(KbMeta(key="catalog_version", value="1"))
    else:
        meta.value = str(int(meta.value or 0) + 1)
