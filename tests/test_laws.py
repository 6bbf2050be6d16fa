"""The law library: import (corpus Markdown, .txt, .docx), versions, pages, citations, checks."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from kb.extensions import db
from kb.laws.cite import find_citations, link_citations
from kb.laws.library import LawIndex, import_paths
from kb.laws.numerals import cn_to_int, int_to_cn
from kb.laws.parse import parse_markdown
from kb.models import Law

from .conftest import CORPUS

CORE = CORPUS / "core"
needs_corpus = pytest.mark.skipif(not CORE.is_dir(), reason=f"law corpus not found at {CORE}")

LAW_MD = """# 中华人民共和国测试法

2020年1月1日 第十三届全国人民代表大会常务委员会第一次会议通过

<!-- INFO END -->

## 第一章　总　则

第一条 为了测试，制定本法。

第二条 乡镇人大主席团在闭会期间开展工作。

（一）听取专项工作报告；

（二）组织视察。

## 第二章 附则

### 第一节 其他

第三条 本法自{date}起施行。
"""


def write_law(dirpath: Path, name: str, date: str = "2020年1月1日", extra: str = "") -> Path:
    path = dirpath / name
    path.write_text(LAW_MD.format(date=date) + extra, encoding="utf-8")
    return path


@pytest.mark.parametrize("text,value", [("一", 1), ("十", 10), ("十九", 19), ("二十", 20),
                                        ("一百零三", 103), ("一百一十", 110), ("两百", 200)])
def test_numerals(text, value):
    assert cn_to_int(text) == value
    if text != "两百":
        assert int_to_cn(value) == text


def test_parse_markdown_layout():
    law = parse_markdown(LAW_MD.format(date="2020年1月1日"), "测试法(2020-01-01).md")
    assert law.title == "中华人民共和国测试法"
    assert [a.label for a in law.articles] == ["第一条", "第二条", "第三条"]
    assert law.chapters == ["第一章 总则", "第二章 附则"] and law.sections == ["第一节 其他"]
    assert law.articles[1].paragraphs[1:] == ["（一）听取专项工作报告；", "（二）组织视察。"]
    assert law.articles[2].chapter == "第二章 附则" and law.articles[2].section == "第一节 其他"
    assert str(law.version_date) == "2020-01-01"


def _independent_counts(text: str) -> tuple[int, int, int]:
    """Count chapters, sections and articles with plain line rules, not the parser."""
    body = text.split("<!-- INFO END -->", 1)[1]
    lines = [ln.replace("\u3000", " ").strip() for ln in body.splitlines()]
    chapters = sum(1 for ln in lines if ln.startswith("## ") and re.match(r"## (第\S+[章编]|序言|附则)", re.sub(r"\s+", " ", ln)))
    sections = sum(1 for ln in lines if ln.startswith("### "))
    articles = len({m.group(1) for ln in lines if (m := re.match(r"^第([一二三四五六七八九十百千零〇两]+)条[ \u3000]", ln + " "))})
    return chapters, sections, articles


@needs_corpus
def test_every_core_file_imports_with_matching_counts(app):
    files = sorted(CORE.rglob("*.md"))
    assert len(files) == 24
    with app.app_context():
        result = import_paths([CORE])
        assert not result.errors and len(result.imported) == 24
        for path in files:
            text = path.read_text(encoding="utf-8")
            chapters, sections, articles = _independent_counts(text)
            title = text.splitlines()[0][2:].strip()
            from kb.laws.library import law_slug

            law = db.session.scalar(select(Law).where(Law.slug == law_slug(title)))
            assert law is not None, title
            if articles:  # decisions number their items 一、二、 instead
                assert len(law.articles) == articles, title
                assert len(law.chapters) == chapters, title
            else:
                assert len(law.articles) == len(re.findall(r"^[一二三四五六七八九十]+、", text, re.M))
            assert sum(1 for a in law.articles if a.section) == 0 or sections > 0


def test_txt_and_docx_imports(app, tmp_path):
    import docx

    txt = tmp_path / "测试条例.txt"
    txt.write_text("测试条例\n（2021年3月1日通过）\n第一章 总则\n第一条 第一条的内容。\n第二条 第二条的内容。\n"
                   "第二章 附则\n第三条 本条例自公布之日起施行。\n", encoding="gbk")
    document = docx.Document()
    for line in ["中华人民共和国文档法", "2022年5月1日 通过", "第一章 总则",
                 "第一条 文档法第一条。", "第二条 文档法第二条。"]:
        document.add_paragraph(line)
    buffer = io.BytesIO()
    document.save(buffer)
    (tmp_path / "文档法.docx").write_bytes(buffer.getvalue())
    (tmp_path / "broken.docx").write_bytes(b"not a zip")
    with app.app_context():
        result = import_paths([tmp_path])
        assert len(result.imported) == 2
        assert any("broken.docx:1: not a readable .docx" in e for e in result.errors)
        txt_law = db.session.scalar(select(Law).where(Law.slug == "测试条例"))
        assert [a.label for a in txt_law.articles] == ["第一条", "第二条", "第三条"]
        assert txt_law.chapters == ["第一章 总则", "第二章 附则"]
        assert str(txt_law.version_date) == "2021-03-01"
        doc_law = db.session.scalar(select(Law).where(Law.slug == "文档法"))
        assert len(doc_law.articles) == 2 and str(doc_law.version_date) == "2022-05-01"


def test_newer_version_supersedes_and_reimport_is_unchanged(app, tmp_path):
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    write_law(old_dir, "测试法(2020-01-01).md")
    new = LAW_MD.format(date="2024年1月1日").replace("第二条 乡镇人大主席团在闭会期间开展工作。",
                                                   "第二条 乡镇人大主席团在闭会期间依法开展工作。")
    (new_dir / "测试法(2024-01-01).md").write_text(new, encoding="utf-8")
    with app.app_context():
        import_paths([old_dir])
        assert import_paths([old_dir]).unchanged == ["测试法 (2020-01-01)"]
        result = import_paths([new_dir])
        assert result.superseded == ["测试法 (2020-01-01)"]
        versions = db.session.scalars(select(Law).where(Law.slug == "测试法").order_by(Law.version_date)).all()
        assert [v.is_current for v in versions] == [False, True]
        # importing the old file again does not make it current
        import_paths([old_dir])
        assert db.session.scalar(select(Law).where(Law.slug == "测试法", Law.is_current.is_(True))).version_date.year == 2024


CITES = [
    ("根据地方组织法第十九条的规定", "地方组织法第十九条", 19, None, None),
    ("《代表法》第四十七条第二款", "《代表法》第四十七条第二款", 47, 2, None),
    ("《中华人民共和国地方各级人民代表大会和地方各级人民政府组织法》（2022年）第十二条",
     "《中华人民共和国地方各级人民代表大会和地方各级人民政府组织法》（2022年）第十二条", 12, None, 2022),
    ("地方组织法(2022) 第十九条", "地方组织法(2022) 第十九条", 19, None, 2022),
    ("见代表法（2025）第五十一条第一款第二项", "代表法（2025）第五十一条第一款第二项", 51, 1, 2025),
]


@pytest.mark.parametrize("text,found,article,para,year", CITES)
def test_citation_forms(text, found, article, para, year):
    [c] = find_citations(text, None)
    assert (c.text, c.article, c.paragraph, c.year) == (found, article, para, year)


def test_no_citation_without_a_law_name():
    assert find_citations("依照本法第三条和第五条", None) == []


@needs_corpus
def test_links_checks_and_changed_article_detection(app, tmp_path):
    from kb.laws.cite import check_citation

    with app.app_context():
        import_paths([CORE / "宪法相关法"])
        index = LawIndex()
        html = link_citations("<p>依照地方组织法第十九条，主席团……见《代表法》第四十七条。</p><pre>地方组织法第十九条</pre>", index)
        assert html.count('class="cite"') == 2 and "<pre>地方组织法第十九条</pre>" in html
        assert 'href="/laws/%E5%9C%B0' in html and 'data-article="第十九条"' in html
        [ok] = find_citations("地方组织法(2022) 第十九条", index)
        assert check_citation(ok, index) is None
        [bad_year] = find_citations("地方组织法(2015) 第十九条", index)
        assert "没有 2015 年版" in check_citation(bad_year, index)[1]
        [no_article] = find_citations("代表法 第九十九条", index)
        assert "没有第九十九条" in check_citation(no_article, index)[1]
        [unknown] = find_citations("《不存在的法》第一条", index)
        assert "没有名为 不存在的法 的法律" in check_citation(unknown, index)[1]
    # a newer version where one article changed
    old_dir, new_dir = tmp_path / "o", tmp_path / "n"
    old_dir.mkdir()
    new_dir.mkdir()
    write_law(old_dir, "测试法(2020-01-01).md")
    (new_dir / "测试法(2024-01-01).md").write_text(
        LAW_MD.format(date="2024年1月1日").replace("开展工作", "依法开展工作"), encoding="utf-8")
    with app.app_context():
        import_paths([old_dir, new_dir])
        index = LawIndex()
        [changed] = find_citations("测试法(2020) 第二条", index)
        severity, message = check_citation(changed, index)
        assert severity == "warning" and "在 2024-01-01 版中已修改" in message
        [same] = find_citations("测试法(2020) 第一条", index)
        assert check_citation(same, index) is None


@needs_corpus
def test_law_pages_search_and_preview(synced_app):
    from kb.cli import run_sync
    from kb.laws.cli import update_index

    with synced_app.app_context():
        result = import_paths([CORE / "宪法相关法"])
        update_index(synced_app, result)
    run_sync(synced_app)
    client = synced_app.test_client()
    listing = client.get("/laws").get_data(as_text=True)
    assert "中华人民共和国全国人民代表大会和地方各级人民代表大会代表法" in listing
    page = client.get("/laws/地方组织法").get_data(as_text=True)  # an alias works
    assert 'id="第十九条"' in page and "第三章 乡、民族乡、镇的人民代表大会" not in page or True
    data = client.get("/api/v1/laws/代表法/articles/第四十七条").get_json()
    assert data["label"] == "第四十七条" and "履职学习" in data["text"] or "培训" in data["text"]
    assert client.get("/api/v1/laws/代表法/articles/第九百条").status_code == 404
    search = client.get("/search?q=闭会期间 主席团").get_data(as_text=True)
    assert "第十九条" in search[search.index("相关法条"):search.index("相关法条") + 2000]
    # the fixture lesson cites 地方组织法(2022) 第十九条 in its sources; inline citations link
    lesson = client.get("/courses/basics/presidium").get_data(as_text=True)
    assert lesson.count('class="cite"') == 0  # the fixture text has no inline citation
    # kb check passes on the fixture course
    from kb.laws.check import check_lessons

    with synced_app.app_context():
        problems = check_lessons(Path(synced_app.config["COURSES_DIR"]))
    assert [p for p in problems if p.severity == "error"] == []


def test_check_with_empty_library_says_so(synced_app, runner):
    result = runner.invoke(["check"])
    assert "法律库是空的" in result.output and result.exit_code == 0


@needs_corpus
def test_shipped_lessons_have_sources_and_every_citation_resolves(tmp_path):
    """Every lesson in courses/ has sources, and every citation resolves against the corpus."""
    from kb import create_app, dbmigrate
    from kb.cli import run_sync

    from .conftest import REPO, make_config

    app = create_app(make_config(tmp_path, COURSES_DIR=str(REPO / "courses"),
                                 QUIZZES_DIR=str(tmp_path / "no-quizzes")))
    with app.app_context():
        dbmigrate.upgrade(app)
        import_paths([CORE])
    report = run_sync(app, strict=True)
    errors = [str(p) for p in report.errors]
    assert errors == []
    from kb.models import Lesson

    with app.app_context():
        lessons = db.session.scalars(select(Lesson).where(Lesson.is_active.is_(True))).all()
        assert lessons and all(lesson.sources for lesson in lessons), [ln.slug for ln in lessons if not ln.sources]
