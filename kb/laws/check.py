"""``kb check``: citations in lessons that do not resolve, or whose article changed since."""

from __future__ import annotations

from pathlib import Path

from flask_babel import gettext as _
from sqlalchemy import select

from ..extensions import db
from ..models import Lesson
from ..records import Problem
from .cite import check_citation, find_citations
from .library import LawIndex


def _line_of(source: str, needle: str) -> int:
    pos = source.find(needle)
    return source.count("\n", 0, pos) + 1 if pos >= 0 else 1


def check_lessons(courses_root: Path, index: LawIndex | None = None) -> list[Problem]:
    """Check every active lesson's ``sources`` and inline citations against the library."""
    index = index or LawIndex()
    problems: list[Problem] = []
    lessons = db.session.scalars(select(Lesson).where(Lesson.is_active.is_(True))
                                 .order_by(Lesson.source_path)).all()
    if index.empty:
        return [Problem(str(courses_root), 0, _("法律库是空的：引用只显示为普通文字，无法核对（用 `kb laws import` 导入法律）"),
                        "warning")]
    for lesson in lessons:
        path = lesson.source_path
        try:
            source = (courses_root.parent / path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            source = ""
        seen = set()
        for entry in lesson.sources or []:
            found = find_citations(entry, index)
            if not found:
                problems.append(Problem(path, _line_of(source, entry), _(
                    "来源「%(entry)s」不是法律条文的引用（应写成 地方组织法(2022) 第十九条）", entry=entry),
                    "warning"))
            for c in found:
                _add(problems, seen, c, index, path, _line_of(source, entry))
        text = " ".join(s.get("heading", "") + " " + s.get("text", "") for s in lesson.sections or [])
        for c in find_citations(text, index):
            if c.slug is None and not c.text.startswith("《"):
                continue
            _add(problems, seen, c, index, path, _line_of(source, c.text[:12]))
    return problems


def _add(problems, seen, c, index, path, line):
    key = (c.slug or c.name, c.year, c.article)
    if key in seen:
        return
    seen.add(key)
    verdict = check_citation(c, index)
    if verdict:
        severity, message = verdict
        problems.append(Problem(path, line, message, severity))
