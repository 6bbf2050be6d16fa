"""Glue between the lesson catalog, plugins and the search index."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from flask import Flask

from .catalog import LessonView
from .pluginhost import call_each

_lock = threading.Lock()


def get_index(app: Flask):
    """Return this worker's long-lived SearchIndex (one per process, opened lazily)."""
    index = app.extensions.get("kb.search")
    if index is None:
        with _lock:
            index = app.extensions.get("kb.search")
            if index is None:
                from .search import SearchIndex

                index = SearchIndex(app.config["INDEX_DIR"])
                app.extensions["kb.search"] = index
    return index


def lesson_documents(lesson: LessonView) -> list:
    """Return one search document per section (intro and each H2) of a lesson."""
    from .search import SearchDoc

    docs = []
    for section in lesson.sections:
        anchor = section.get("anchor", "")
        docs.append(SearchDoc(
            kind="lesson",
            course=lesson.course_slug,
            lesson=lesson.slug,
            anchor=anchor,
            url=lesson.url + (f"#{anchor}" if anchor else ""),
            title=lesson.title,
            heading=section.get("heading", ""),
            body=(lesson.summary + " " + section.get("text", "")) if not anchor else section.get("text", ""),
            course_title=lesson.course_title,
            tags=list(lesson.tags),
            audience=list(lesson.audience),
        ))
    return docs


def all_documents(app: Flask, catalog) -> Iterable:
    for lesson in catalog.lessons():
        yield from lesson_documents(lesson)
    for _plugin, docs in call_each(app.extensions["kb.pm"], "kb_search_documents", app=app):
        yield from docs


def rebuild(app: Flask, catalog, progress: Callable[[int], None] | None = None) -> int:
    """Write a fresh index beside the live one and swap it in; return the document count."""
    return get_index(app).rebuild(all_documents(app, catalog), progress=progress)


def update_lessons(app: Flask, catalog, keys: Iterable[tuple[str, str]]) -> None:
    """Replace the documents of the given (course, lesson) keys with their current text."""
    keys = list(keys)
    docs = []
    for course, slug in keys:
        lesson = catalog.lesson(course, slug)
        if lesson is not None:
            docs.extend(lesson_documents(lesson))
    get_index(app).update_lessons(keys, docs)
