"""Loading lessons: front matter, rendering, hashing, and every kind of bad input."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

from kb.cli import run_sync
from kb.content.render import render_markdown, slugify
from kb.extensions import db
from kb.models import Course, Lesson

LESSON = """---
title: {title}
minutes: 5
---
正文。

## 小节一

内容一。
"""


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def messages(report):
    return [str(p) for p in report.problems]


@pytest.fixture(autouse=True)
def english_messages(request):
    """Most tests here read the problems in the English catalogue, as an operator with
    ``KB_LOCALE=en`` (or ``LANG=en_…``) sees them; the Chinese default and the language of
    problems kept from an earlier sync are tested on their own below."""
    if "app" in request.fixturenames:
        request.getfixturevalue("app").config["CLI_LOCALE"] = "en"


def test_sync_loads_courses_and_lessons_in_order(app):
    report = run_sync(app)
    assert report.added == {"course": 2, "lesson": 4}
    assert not report.errors
    with app.app_context():
        course = db.session.scalar(select(Course).where(Course.slug == "basics"))
        assert course.title == "乡镇人大基础（测试）" and course.required_for == ["deputy"]
        assert [les.slug for les in course.lessons] == ["status", "presidium"]
        lesson = course.lessons[1]
        assert lesson.minutes == 12 and lesson.tags == ["主席团", "闭会期间"]
        assert lesson.sources == ["地方组织法(2022) 第十九条"]
        assert '<h2 id="闭会期间主席团做什么">' in lesson.html
        assert '<div class="admonition note">' in lesson.html and "<table>" in lesson.html


def test_unchanged_files_are_skipped_and_changes_picked_up(app, config):
    from pathlib import Path

    run_sync(app)
    again = run_sync(app)
    assert again.unchanged == {"course": 2, "lesson": 4} and not again.changed_lessons
    path = Path(config["COURSES_DIR"]) / "basics" / "01-status.md"
    path.write_text(path.read_text().replace("每届任期五年", "每届任期五年（已修改）"))
    third = run_sync(app)
    assert third.updated == {"lesson": 1} and third.changed_lessons == {("basics", "status")}


def test_removed_lesson_is_deactivated_not_deleted(app, config):
    from pathlib import Path

    run_sync(app)
    (Path(config["COURSES_DIR"]) / "duties" / "01-suggestions.md").unlink()
    report = run_sync(app)
    assert report.removed == {"lesson": 1}
    with app.app_context():
        lesson = db.session.scalar(select(Lesson).where(Lesson.slug == "suggestions"))
        assert lesson is not None and lesson.is_active is False
    assert app.test_client().get("/courses/duties/suggestions").status_code == 404


def test_chinese_heading_anchors():
    assert slugify("第一章 总则") == "第一章-总则"
    assert slugify("闭会期间主席团做什么？") == "闭会期间主席团做什么"
    html = render_markdown("## 第一章 总则\n\n文字\n").html
    assert '<h2 id="第一章-总则">' in html


def test_markdown_is_sanitised_but_keeps_ids_and_code_classes():
    r = render_markdown(
        "## 标题\n\n<script>alert(1)</script><img src=x onerror=alert(1)>"
        "[x](javascript:alert(1))\n\n```python\nprint(1)\n```\n"
    )
    assert "<script" not in r.html and "onerror" not in r.html and "javascript:" not in r.html
    assert 'id="标题"' in r.html and 'class="language-python"' in r.html


def test_sections_split_at_h2():
    r = render_markdown("导语。\n\n## 甲\n\n甲的内容。\n\n### 子节\n\n更多。\n\n## 乙\n\n乙的内容。\n")
    assert [(s["anchor"], s["heading"]) for s in r.sections] == [("", ""), ("甲", "甲"), ("乙", "乙")]
    assert "更多" in r.sections[1]["text"]


# -- bad input: each gives path:line: message, the rest still loads -------------------------

@pytest.fixture
def courses(config):
    from pathlib import Path

    return Path(config["COURSES_DIR"])


def test_malformed_front_matter(app, courses):
    write(courses / "basics" / "03-bad.md", "---\ntitle: 好\nminutes: [1,\n---\n正文\n")
    report = run_sync(app)
    [msg] = [m for m in messages(report) if "03-bad.md" in m and "YAML" in m]
    assert msg.startswith("courses/basics/03-bad.md:3: front matter is not valid YAML")
    assert report.added["lesson"] == 4  # the others still load


def test_unknown_field_names_its_line(app, courses):
    write(courses / "basics" / "03-extra.md", "---\ntitle: 好\nminutes: 5\ncolour: red\n---\n正文\n")
    report = run_sync(app)
    assert "courses/basics/03-extra.md:4: unknown field 'colour' (allowed: audience, minutes, sources, summary, tags, title, updated)" in messages(report)
    assert report.added["lesson"] == 5  # an unknown field is reported, the lesson still loads


def test_missing_title(app, courses):
    write(courses / "basics" / "03-untitled.md", "---\nminutes: 5\n---\n正文\n")
    report = run_sync(app)
    assert "courses/basics/03-untitled.md:1: The title is missing" in messages(report)
    assert report.added["lesson"] == 4


def test_gbk_file_is_read_with_a_warning(app, courses):
    write(courses / "basics" / "03-gbk.md", LESSON.format(title="国标编码的课"), "gbk")
    report = run_sync(app)
    assert any("03-gbk.md:1: file is GBK/GB18030-encoded" in m for m in messages(report))
    assert not [p for p in report.errors if "03-gbk" in p.path]
    with app.app_context():
        assert db.session.scalar(select(Lesson).where(Lesson.slug == "gbk")).title == "国标编码的课"


def test_empty_file(app, courses):
    write(courses / "basics" / "03-empty.md", "")
    report = run_sync(app)
    assert "courses/basics/03-empty.md:1: The file is empty" in messages(report)


def test_binary_file(app, courses):
    (courses / "basics" / "03-binary.md").write_bytes(b"\x00\x01\x02\xff\xfe" * 100)
    report = run_sync(app)
    assert any("03-binary.md:0: file is binary" in m for m in messages(report))


def test_duplicate_slug(app, courses):
    write(courses / "basics" / "05-presidium.md", LESSON.format(title="重复"))
    report = run_sync(app)
    assert any(m.startswith("courses/basics/05-presidium.md:1: duplicate lesson slug 'presidium'")
               for m in messages(report))
    with app.app_context():
        assert db.session.scalar(select(Lesson).where(Lesson.slug == "presidium")).title == "主席团和主席"


def test_broken_links_name_the_line(app, courses):
    write(courses / "basics" / "03-links.md",
          "---\ntitle: 链接\n---\n第一行。\n\n[好](01-status.md#代表的任期) [坏](09-nothing.md)\n\n"
          "[坏锚点](02-presidium.md#不存在的小节)\n")
    report = run_sync(app)
    msgs = messages(report)
    assert "courses/basics/03-links.md:6: broken link to 09-nothing.md: no such lesson" in msgs
    assert any(m.startswith("courses/basics/03-links.md:8: broken link to 02-presidium.md#不存在的小节") for m in msgs)
    assert not any("代表的任期" in m for m in msgs)


def test_link_is_rewritten_to_the_lesson_url(app):
    run_sync(app)
    page = app.test_client().get("/courses/basics/status").get_data(as_text=True)
    assert 'href="/courses/basics/presidium#%E9%97%AD' in page


def test_problems_of_unchanged_files_are_still_reported(app, courses):
    write(courses / "basics" / "03-untitled.md", "---\nminutes: 5\n---\n正文\n")
    run_sync(app)
    second = run_sync(app)
    assert any("03-untitled.md:1: The title is missing" in m for m in messages(second))
    (courses / "basics" / "03-untitled.md").unlink()
    assert not any("03-untitled" in m for m in messages(run_sync(app)))


def test_problems_are_chinese_by_default_and_follow_the_operator_language(app, courses, runner):
    """The messages are Chinese unless the operator's language is English; a problem kept
    from an earlier sync (the file is unchanged, so not read again) is printed in the
    language of the sync that prints it, not of the one that found it."""
    app.config.pop("CLI_LOCALE")
    write(courses / "basics" / "03-untitled.md", "---\nminutes: 5\ncolour: red\n---\n正文\n")
    write(courses / "basics" / "04-links.md", "---\ntitle: 链接\n---\n见[无此课](09-nothing.md)。\n")
    msgs = messages(run_sync(app))
    assert "courses/basics/03-untitled.md:1: 缺少标题（title）" in msgs
    assert any(m.startswith("courses/basics/03-untitled.md:3: 未知字段 'colour'（可用字段：") for m in msgs)
    assert "courses/basics/04-links.md:4: 链接 09-nothing.md 失效：没有这篇课文" in msgs
    result = runner.invoke(["sync"])
    assert "courses/basics/03-untitled.md:1: 缺少标题（title）" in result.output
    app.config["CLI_LOCALE"] = "en"
    msgs = messages(run_sync(app))
    assert "courses/basics/03-untitled.md:1: The title is missing" in msgs
    assert "courses/basics/04-links.md:4: broken link to 09-nothing.md: no such lesson" in msgs
    with app.app_context():
        from kb.models import ContentProblem

        row = db.session.scalar(select(ContentProblem).where(ContentProblem.line == 1,
                                                             ContentProblem.path.endswith("03-untitled.md"),
                                                             ContentProblem.severity == "error",
                                                             ContentProblem.message.contains("标题")))
        assert row.message == "缺少标题（title）"  # kept in the source language, with its msgid
        assert row.message_i18n == {"msgid": "缺少标题（title）", "args": {}}


def test_course_without_course_file_and_bad_fields(app, courses):
    write(courses / "nometa" / "01-one.md", LESSON.format(title="一"))
    write(courses / "badmeta" / "_course.md", "---\ntitle: 坏\norder: first\nrequired_for: [mayor]\n---\n")
    report = run_sync(app)
    msgs = messages(report)
    assert "courses/nometa/_course.md:0: missing _course.md (course title taken from the folder name)" in msgs
    assert "courses/badmeta/_course.md:3: order must be a whole number, not 'first'" in msgs
    assert any(m.startswith("courses/badmeta/_course.md:4: unknown role(s) in required_for: mayor") for m in msgs)


def test_strict_exit_code(app, courses, runner):
    assert runner.invoke(["sync", "--strict", "-q"]).exit_code == 0
    write(courses / "basics" / "03-untitled.md", "---\nminutes: 5\n---\n正文\n")
    result = runner.invoke(["sync", "--strict", "-q"])
    assert result.exit_code == 1
    assert "courses/basics/03-untitled.md:1: The title is missing" in result.output
    assert runner.invoke(["sync", "-q"]).exit_code == 0


def test_misnamed_file_is_ignored_with_a_warning(app, courses):
    write(courses / "basics" / "notes.md", LESSON.format(title="笔记"))
    report = run_sync(app)
    assert any("notes.md:0: ignored: lesson files are named NN-slug.md" in m for m in messages(report))
    assert not report.errors


def test_missing_courses_dir(tmp_path):
    from kb import create_app, dbmigrate

    from .conftest import make_config

    config = make_config(tmp_path, COURSES_DIR=str(tmp_path / "nothing-here"))
    shutil.rmtree(tmp_path / "courses")
    app = create_app(config)
    with app.app_context():
        dbmigrate.upgrade(app)
    report = run_sync(app)
    assert not report.errors and report.added == {}


def _selects(app):
    """Collect the SELECT statements run on the app's engine (a list filled while in use)."""
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(engine, "before_cursor_execute", record)


def test_sync_never_reads_lesson_html_or_sections(app, courses):
    write(courses / "basics" / "03-links.md",
          "---\ntitle: 链接\n---\n第一行。\n\n[坏](09-nothing.md)\n")
    run_sync(app)
    seen, stop = _selects(app)
    try:
        unchanged = run_sync(app)
        assert not unchanged.changed_lessons
        # the stored link problem is still reported although the links were not re-checked
        assert "courses/basics/03-links.md:6: broken link to 09-nothing.md: no such lesson" in messages(unchanged)
        assert seen and not [s for s in seen if "lesson.html" in s or "lesson.sections" in s]
        seen.clear()
        path = courses / "basics" / "01-status.md"
        path.write_text(path.read_text() + "\n\n## 新增小节\n\n新内容。\n")
        changed = run_sync(app)
        assert changed.changed_lessons == {("basics", "status")}
        assert not [s for s in seen if "lesson.html" in s]
        # only the changed lesson's sections were read (to update its search documents)
        assert len([s for s in seen if "lesson.sections" in s]) == 1
    finally:
        stop()
    from kb import search_index

    with app.app_context():
        assert any(h.lesson == "status" for h in search_index(app).search("新内容").hits)


def test_partial_catalog_fetches_html_on_demand(app):
    from kb import get_catalog
    from kb.catalog import load_lessons

    run_sync(app)
    with app.app_context():
        full = get_catalog(app).lesson("basics", "presidium")
        part = load_lessons([("basics", "presidium"), ("basics", "nothing")])
        assert [les.key for les in part.lessons()] == [("basics", "presidium")]
        lesson = part.lesson("basics", "presidium")
        assert lesson.html_text is None and lesson.sections == full.sections
        seen, stop = _selects(app)
        try:
            assert lesson.html == full.html
            assert '<h2 id="闭会期间主席团做什么">' in lesson.html  # the second time from the LRU
        finally:
            stop()
        assert len(seen) == 1 and "lesson.html" in seen[0]


def test_renumbered_lesson_moves_in_the_course(app, config):
    from pathlib import Path

    run_sync(app)
    root = Path(config["COURSES_DIR"]) / "basics"
    (root / "01-status.md").rename(root / "03-status.md")
    report = run_sync(app)
    assert report.unchanged["lesson"] == 4 and not report.errors
    from kb import get_catalog

    with app.app_context():
        app.extensions["kb.catalog"].invalidate()
        assert [les.slug for les in get_catalog().course("basics").lessons] == ["presidium", "status"]
        lesson = db.session.scalar(select(Lesson).where(Lesson.slug == "status"))
        assert lesson.source_path.endswith("03-status.md")
