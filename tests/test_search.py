"""Chinese full-text search (kb.search): analysis, ranking, filters, snippets, index life cycle."""

from __future__ import annotations

import json
import math
import os
import re
import threading
from pathlib import Path

import pytest

from kb.search import SearchDoc, SearchIndex, SearchIndexBusy, SearchResults, analysis

FIXTURE = Path(__file__).parent / "fixtures" / "search" / "sections.json"
LAW_CORPUS = Path(
    os.environ.get(
        "KB_LAW_CORPUS",
        Path(__file__).resolve().parents[2] / "shared" / "corpora" / "cn-law" / "core",
    )
)


def load_docs() -> list[SearchDoc]:
    """The fixture lessons, one SearchDoc per section (anchor "" = intro)."""
    docs = []
    for lesson in json.loads(FIXTURE.read_text(encoding="utf-8")):
        for anchor, heading, body in lesson["sections"]:
            base = f"/courses/{lesson['course']}/{lesson['lesson']}"
            docs.append(
                SearchDoc(
                    kind=lesson["kind"],
                    course=lesson["course"],
                    lesson=lesson["lesson"],
                    anchor=anchor,
                    url=f"{base}#{anchor}" if anchor else base,
                    title=lesson["title"],
                    heading=heading,
                    body=body,
                    course_title=lesson["course_title"],
                    tags=lesson["tags"],
                    audience=lesson["audience"],
                )
            )
    return docs


def doc(course, lesson, anchor, title, heading, body, **kw) -> SearchDoc:
    url = f"/courses/{course}/{lesson}" + (f"#{anchor}" if anchor else "")
    return SearchDoc(
        kind=kw.pop("kind", "lesson"),
        course=course,
        lesson=lesson,
        anchor=anchor,
        url=url,
        title=title,
        heading=heading,
        body=body,
        **kw,
    )


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    ix = SearchIndex(tmp_path_factory.mktemp("search") / "index")
    assert ix.rebuild(load_docs()) == len(load_docs())
    yield ix
    ix.close()


@pytest.fixture
def fresh(tmp_path):
    ix = SearchIndex(tmp_path / "index")
    ix.rebuild(load_docs())
    yield ix
    ix.close()


def urls(results: SearchResults) -> list[str]:
    return [h.url for h in results.hits]


# --------------------------------------------------------------------------- analysis


def test_tokenize_words_uses_search_mode_userdict_and_lowercase():
    words = analysis.tokenize_words("主席团闭会期间做什么 Wi-Fi ＰＤＦ")
    assert {"主席团", "主席", "闭会期间", "闭会", "期间"} <= set(words)
    assert {"wi", "fi", "wifi", "pdf"} <= set(words)  # lowercased, full-width folded, joined


def test_userdict_terms_are_single_words():
    for term in ("人大主席", "代表联络站", "专项工作报告", "代表资格审查委员会", "建议批评和意见"):
        assert analysis.is_word(term), term


def test_dictionary_loaded_once_per_process():
    analysis.warm_up()
    analysis.warm_up()
    analysis.tokenize_words("人大常委会")
    assert analysis.LOAD_COUNT == 1


def test_grams_positions_break_at_punctuation():
    grams = list(analysis.iter_grams("闭会，期间"))
    assert [(g, p) for g, _, _, p in grams] == [("闭会", 0), ("期间", 2)]
    assert analysis.gram_cover("人民代表大会") == [("人民", 0), ("代表", 2), ("大会", 4)]


# --------------------------------------------------------------------------- matching and ranking


def test_word_query(index):
    res = index.search("主席团")
    assert res.total >= 5 and not res.index_missing
    for hit in res.hits:
        assert "主席团" in hit.title + hit.heading + re.sub("<[^>]+>", "", hit.snippet)


def test_subword_query_finds_text_inside_longer_words(index):
    # 会期 occurs only inside 闭会期间 (segmented 闭会|期间 or as one dictionary word)
    res = index.search("会期", per_page=20)
    found = set(urls(res))
    expected = {d.url for d in load_docs() if "会期" in d.title + d.heading + d.body}
    assert expected and found == expected
    assert any("<mark>会期</mark>" in h.snippet for h in res.hits)


def test_natural_sentence_ranks_the_right_section_first(index):
    res = index.search("主席团闭会期间做什么")
    assert res.hits, "a natural question must not return nothing"
    assert res.hits[0].url == "/courses/presidium/02-between-sessions#法律怎么规定"
    # sections mentioning only one of 主席团 / 闭会期间 rank below every section with both
    both = [h for h in res.hits if h.lesson == "02-between-sessions"]
    assert res.hits[: len(both)] == both


def test_abbreviation_matches_the_law_wording(index):
    # 人大主席 is written 人民代表大会主席 in law texts; 乡镇 as 乡、民族乡、镇
    res = index.search("乡镇人大主席", kind="law_article")
    assert urls(res) == ["/courses/law-local-org/art-18"]
    assert "<mark>乡、民族乡、镇的人民代表大会</mark>" in res.hits[0].snippet
    assert "/courses/law-local-org/art-18" in urls(index.search("乡镇人大主席", per_page=5))


def test_title_boost(tmp_path):
    ix = SearchIndex(tmp_path / "ix")
    ix.rebuild(
        [
            doc(
                "c",
                "body-only",
                "",
                "代表小组活动",
                "",
                "代表小组组织代表开展视察，并把视察中了解到的情况整理成建议。视察前要做好准备。",
            ),
            doc("c", "in-title", "", "视察怎么做", "", "先定题目，再定路线，最后写报告。"),
        ]
    )
    assert ix.search("视察").hits[0].lesson == "in-title"


def test_latin_words_are_case_insensitive(index):
    for q in ("PDF", "pdf", "wifi", "Wi-Fi", "APP"):
        res = index.search(q)
        assert urls(res) == ["/courses/county-sc/02-online-training#下载和登录"], q
    assert "<mark>Wi-Fi</mark>" in index.search("wifi").hits[0].snippet


# --------------------------------------------------------------------------- filters and paging


def test_course_filter(index):
    res = index.search("闭会期间", course="deputy-duties")
    assert res.hits and {h.course for h in res.hits} == {"deputy-duties"}


def test_tag_filter(index):
    res = index.search("主席团", tag="闭会期间")
    assert res.hits and {h.lesson for h in res.hits} == {"02-between-sessions"}


def test_kind_filter(index):
    res = index.search("主席团", kind="law_article")
    assert urls(res) == ["/courses/law-local-org/art-18"]
    assert all(h.kind == "lesson" for h in index.search("主席团", kind="lesson").hits)


def test_audience_filter(index):
    everyone = {h.lesson for h in index.search("代表", per_page=50).hits}
    deputy = {h.lesson for h in index.search("代表", audience="deputy", per_page=50).hits}
    chair = {h.lesson for h in index.search("代表", audience="chair", per_page=50).hits}
    assert "02-between-sessions" in everyone and "02-between-sessions" not in deputy
    assert "02-between-sessions" in chair and "02-suggestions" not in chair
    assert "02-suggestions" in deputy
    assert "01-rights-and-duties" in deputy and "01-rights-and-duties" in chair  # everyone's


def test_filter_counts_are_exact(index):
    res = index.search("代表", course="presidium", per_page=1)
    all_hits = index.search("代表", course="presidium", per_page=100)
    assert res.total == all_hits.total == len(all_hits.hits)


def test_paging(index):
    full = index.search("代表", per_page=100)
    assert full.total == len(full.hits) >= 6
    seen = []
    pages = math.ceil(full.total / 4)
    for page in range(1, pages + 1):
        res = index.search("代表", page=page, per_page=4)
        assert res.total == full.total and res.pages == pages
        assert res.page == page
        seen += urls(res)
    assert seen == urls(full)
    beyond = index.search("代表", page=pages + 5, per_page=4)
    assert beyond.hits == [] and beyond.total == full.total


# --------------------------------------------------------------------------- snippets


def test_snippet_marks_hits_and_is_short(index):
    for hit in index.search("主席团闭会期间做什么").hits:
        text = re.sub("<[^>]+>", "", hit.snippet)
        assert len(text) <= 162
    top = index.search("主席团闭会期间做什么").hits[0].snippet
    assert "<mark>主席团</mark>" in top and "<mark>闭会期间</mark>" in top


def test_snippet_is_html_escaped(index):
    hit = index.search("script").hits[0]
    assert "<script" not in hit.snippet
    assert "&lt;<mark>script</mark>&gt;" in hit.snippet
    assert re.sub(r"</?mark>", "", hit.snippet).count("<") == 0


# --------------------------------------------------------------------------- suggestions


def test_suggestions_for_a_latin_typo(index):
    res = index.search("wifl")
    assert res.total == 0 and "wifi" in res.suggestions


def test_suggestions_for_unknown_chinese_are_searchable(index):
    res = index.search("鱿鱼")
    assert res.total == 0 and res.suggestions
    for s in res.suggestions:
        assert index.search(s).total > 0, s


def test_no_suggestions_when_there_are_hits(index):
    assert index.search("主席团").suggestions == []


# --------------------------------------------------------------------------- hostile input

HOSTILE = [
    "",
    "   ",
    '"主席团',
    '"闭会期间"',
    "“主席团”",
    "主席团 AND 代表",
    "主席团 OR",
    "NOT",
    "AND OR NOT",
    "(主席团",
    "主席团)",
    "((()))",
    "*",
    "主*",
    "?",
    "title:主席团",
    "body:",
    ":",
    "主席团^5",
    "~2",
    "[a TO z]",
    "{}",
    "\\",
    "主席团" * 1700,
    "a" * 5000,
    "😀🎉 主席团 😀",
    "'; DROP TABLE lessons; --",
    "<script>alert(1)</script>",
    "\x00\x01\u200b\ufeff",
    "％＊：（）",
    "𠀀𠀁",  # CJK extension B
    "-主席团 +代表",
    "\ud800主席团",  # lone surrogate
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_never_raise(index, query):
    res = index.search(query, course="x'; --", tag="(", kind="*", audience=":")
    assert isinstance(res, SearchResults) and isinstance(res.hits, list)
    res = index.search(query)
    assert isinstance(res.hits, list)
    assert len(res.query) <= 200


def test_bad_paging_arguments(index):
    res = index.search("主席团", page=0, per_page=0)
    assert res.page == 1 and res.per_page == 1 and len(res.hits) == 1
    res = index.search("主席团", page="x", per_page=10_000)
    assert res.page == 1 and res.per_page == 100


# --------------------------------------------------------------------------- index life cycle


def test_missing_index(tmp_path):
    ix = SearchIndex(tmp_path / "nothing-here")
    assert not ix.exists()
    res = ix.search("主席团")
    assert res.index_missing and res.hits == [] and res.total == 0
    assert ix.status()["exists"] is False
    ix.delete_lessons([("c", "l")])  # no-op, no error


def test_status(index):
    st = index.status()
    assert st["exists"] and st["documents"] == len(load_docs())
    assert st["generation"].startswith("gen-") and st["path"].endswith(st["generation"])


def test_update_lessons_replaces_a_lesson(fresh):
    assert fresh.search("年初召开主席团会议").hits[0].anchor == "一年的工作安排"
    new = doc(
        "presidium",
        "02-between-sessions",
        "述职评议",
        "闭会期间主席团做什么",
        "述职评议",
        "主席团可以组织代表对政府组成人员开展述职评议。",
        tags=["主席团"],
    )
    fresh.update_lessons([("presidium", "02-between-sessions")], [new])
    lesson_urls = [
        h.url for h in fresh.search("主席团", per_page=50).hits if h.lesson == "02-between-sessions"
    ]
    assert lesson_urls == ["/courses/presidium/02-between-sessions#述职评议"]
    assert "02-between-sessions" not in {h.lesson for h in fresh.search("年初召开").hits}
    assert fresh.search("述职评议").hits[0].anchor == "述职评议"
    assert fresh.status()["documents"] == len(load_docs()) - 3 + 1


def test_delete_lessons(fresh):
    fresh.delete_lessons([("deputy-duties", "02-suggestions")])
    assert fresh.search("script").total == 0
    assert "02-suggestions" not in {h.lesson for h in fresh.search("代表", per_page=50).hits}


def test_update_creates_a_missing_index(tmp_path):
    ix = SearchIndex(tmp_path / "new")
    ix.update_lessons([], [doc("c", "l", "", "选民小组", "", "选民小组是选区内的选民组织。")])
    assert ix.exists() and ix.search("选民").total == 1


def test_rebuild_swaps_atomically_and_open_searchers_keep_working(tmp_path):
    root = tmp_path / "ix"
    reader = SearchIndex(root)
    reader.rebuild(load_docs())
    assert reader.search("主席团").total > 0
    old_gen = reader.status()["generation"]
    held = reader._searcher  # the long-lived searcher of this "process"

    other = SearchIndex(root)  # another process rebuilding
    other.rebuild([doc("new", "l", "", "预算审查", "", "乡镇人民代表大会审查和批准本级预算。")])
    assert not (root / old_gen).exists()  # old generation removed after the swap
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("gen-")) == [
        other.status()["generation"]
    ]

    from whoosh.query import Term

    assert len(held.search(Term("body_w", "主席团"), limit=None)) > 0  # still readable

    res = reader.search("预算")  # refreshes to the new generation
    assert urls(res) == ["/courses/new/l"]
    assert reader.search("主席团").total == 0
    assert reader.status()["generation"] != old_gen


def test_rebuild_failure_keeps_the_live_index(fresh):
    def broken():
        yield from load_docs()[:2]
        raise RuntimeError("content error")

    gen = fresh.status()["generation"]
    with pytest.raises(RuntimeError):
        fresh.rebuild(broken())
    assert fresh.status()["generation"] == gen
    assert fresh.search("主席团").total > 0
    assert [p.name for p in fresh.root.glob("gen-*")] == [gen]


def test_rebuild_reports_progress(tmp_path):
    seen = []
    docs = [doc("c", f"l{i}", "", f"第{i}课", "", "代表") for i in range(250)]
    assert SearchIndex(tmp_path / "p").rebuild(docs, progress=seen.append) == 250
    assert seen == [100, 200, 250]


def test_concurrent_writers_both_succeed(fresh):
    errors = []

    def write(lesson, word):
        try:
            fresh.update_lessons([], [doc("c", lesson, "", word, "", f"{word}的内容")])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=write, args=(f"l{i}", w))
        for i, w in enumerate(["视察报告", "调研报告"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fresh.search("视察报告").hits[0].lesson == "l0"
    assert fresh.search("调研报告").hits[0].lesson == "l1"


def test_busy_writer_fails_with_a_clear_error(tmp_path):
    ix = SearchIndex(tmp_path / "busy", writer_timeout=0.2)
    ix.rebuild(load_docs())
    holder = SearchIndex(tmp_path / "busy")
    with holder._write_lock():
        with pytest.raises(SearchIndexBusy, match="busy"):
            ix.update_lessons([("presidium", "02-between-sessions")], [])
        with pytest.raises(SearchIndexBusy):
            ix.rebuild(load_docs())
    ix.update_lessons([("presidium", "02-between-sessions")], [])  # free again
    assert "02-between-sessions" not in {h.lesson for h in ix.search("主席团").hits}


def test_shared_index_across_threads(index):
    results, errors = [], []

    def worker(q):
        try:
            for _ in range(5):
                results.append((q, urls(index.search(q))))
        except Exception as e:  # pragma: no cover
            errors.append(e)

    queries = ["主席团", "会期", "代表建议", "wifi"]
    threads = [threading.Thread(target=worker, args=(q,)) for q in queries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for q in queries:
        assert len({tuple(u) for qq, u in results if qq == q}) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_searcher_is_reopened_after_fork(fresh):
    assert fresh.search("主席团").total > 0  # parent opens its searcher (as with --preload)
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's open files
        ok = False
        try:
            res = fresh.search("会期")
            ok = res.total > 0 and fresh._pid == os.getpid()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert fresh.search("会期").total > 0


# --------------------------------------------------------------------------- real law texts

LAW_FILES = [
    "宪法相关法/地方各级人民代表大会和地方各级人民政府组织法(2022-03-11).md",
    "宪法相关法/全国人民代表大会和地方各级人民代表大会代表法(2025-03-11).md",
    "DLC/河南地方法规/地方性法规/河南/河南省乡镇人民代表大会主席团工作条例.md",
]
ARTICLE = re.compile(r"^第[一二三四五六七八九十百零]+条")


def law_articles():
    docs = []
    for rel in LAW_FILES:
        path = LAW_CORPUS / rel
        law = path.stem
        current = None
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("<!--"):
                continue
            m = ARTICLE.match(line)
            if m:
                current = doc(
                    f"law-{len(docs)}",
                    m.group(),
                    m.group(),
                    law,
                    m.group(),
                    line[m.end() :].strip(),
                    kind="law_article",
                )
                docs.append(current)
            elif current is not None:
                current.body += line
    return docs


@pytest.fixture(scope="module")
def law_index(tmp_path_factory):
    missing = [rel for rel in LAW_FILES if not (LAW_CORPUS / rel).is_file()]
    if missing:
        pytest.skip(f"law corpus not available at {LAW_CORPUS} (set KB_LAW_CORPUS): {missing[0]}")
    docs = law_articles()
    ix = SearchIndex(tmp_path_factory.mktemp("law"))
    ix.rebuild(docs)
    yield ix, docs
    ix.close()


def test_law_natural_question(law_index):
    ix, _ = law_index
    res = ix.search("主席团闭会期间做什么", per_page=5)
    for hit in res.hits[:3]:
        body = re.sub("<[^>]+>", "", hit.snippet)
        assert "主席团" in body and "闭会期间" in body, hit.url


def test_law_subword_recall_is_exact(law_index):
    """Every article containing the query text is found, and ranked above the others."""
    ix, docs = law_index
    for q in ("会期", "团的日", "三个月内答复", "人民代表大会代表"):
        expected = {d.url for d in docs if q in d.title + d.heading + d.body}
        found = urls(ix.search(q, per_page=100))
        assert expected and set(found[: len(expected)]) == expected, q
    # a single word is matched exactly: nothing else comes back
    expected = {d.url for d in docs if "会期" in d.title + d.heading + d.body}
    assert set(urls(ix.search("会期", per_page=100))) == expected


def test_document_matching_more_words_ranks_first_among_many(tmp_path):
    """A document matching more query words ranks first even when added last among many,
    and the total counts every match (searches are scored exhaustively, no pruning)."""
    from kb.search import SearchDoc, SearchIndex

    docs = [SearchDoc(kind="lesson", course="c", lesson=f"l{i}", anchor="", url=f"/c/l{i}",
                      title=f"第{i}课", heading="", body=f"食品安全的规定第{i}条。" * (1 + i % 5))
            for i in range(300)]
    docs.append(SearchDoc(kind="lesson", course="c", lesson="both", anchor="", url="/c/both",
                          title="末课", heading="", body="食品安全和预算调整都在这里。"))
    index = SearchIndex(tmp_path / "idx")
    index.rebuild(docs)
    results = index.search("食品安全 预算调整", per_page=10)
    assert results.hits[0].lesson == "both"
    assert results.total == 301
    index.close()


# --------------------------------------------------------------------------- exact ranking
# SearchIndex.search evaluates kb's query term-at-a-time (kb/search/evaluate.py); its top hits
# must be those of Whoosh scoring every matching document of the same query.

EXACT_QUERIES = [
    "主席团闭会期间做什么",  # a natural question
    "闭会期间 主席团",
    "乡镇人大主席",  # synonyms (人民代表大会主席, 乡、民族乡、镇)
    "人大代表可以被罢免吗",
    "代表建议多久答复",
    "会期",  # sub-words
    "团的日",
    "三个月内答复",
    "人民代表大会代表",
    "代表",  # a word in most documents
    "地方组织法第十九条",
    "法",  # a single character: its Prefix forms run through Whoosh's own matchers
    "wifi",
    "Wi-Fi 下载 2025年",
    "鱿鱼",  # nothing
]


def _exhaustive(ix, text, filt=None):
    """(url, score) of every match of kb's Whoosh query, best first, as Whoosh ranks them
    when it scores every matching document (no pruning)."""
    from kb.search.index import build_query, parse_query

    with ix._lock:
        searcher = ix._get_searcher()
        wq = build_query(parse_query(text))
        if wq is None:
            return []
        return [(hit["url"], hit.score) for hit in searcher.search(wq, limit=None, filter=filt)]


def _assert_exact(ix, text, page=1, per_page=10, **filters):
    from kb.search import SearchIndex as SI

    full = _exhaustive(ix, text, SI._filter(filters.get("course"), filters.get("tag"),
                                           filters.get("kind"), filters.get("audience")))
    res = ix.search(text, page=page, per_page=per_page, **filters)
    want = full[(page - 1) * per_page : page * per_page]
    assert urls(res) == [u for u, _ in want], (text, page, per_page, filters)
    assert res.total == len(full), text
    for hit, (_, score) in zip(res.hits, want, strict=True):
        assert math.isclose(hit.score, score, rel_tol=1e-9), (text, hit.url)


@pytest.mark.parametrize("text", EXACT_QUERIES)
def test_top_hits_are_those_of_an_exhaustive_whoosh_search(index, law_index, text):
    ix, _ = law_index
    for page, per_page in ((1, 10), (2, 3), (1, 100)):
        _assert_exact(ix, text, page, per_page)
        _assert_exact(index, text, page, per_page)
    _assert_exact(index, text, course="presidium")
    _assert_exact(index, text, kind="lesson", audience="deputy")


def test_exact_ranking_over_several_segments_with_deleted_documents(tmp_path):
    """After updates an index has several segments, some with deleted documents; each segment
    is evaluated with its own postings and deletions, and the top hits still match Whoosh's."""
    from whoosh import index as windex

    docs = law_articles() if all((LAW_CORPUS / rel).is_file() for rel in LAW_FILES) else []
    docs = (docs or load_docs())[:90]
    ix = SearchIndex(tmp_path / "ix")
    ix.rebuild(docs[:60])
    gen = ix.status()["generation"]
    wix = windex.open_dir(str(tmp_path / "ix" / gen))
    writer = wix.writer()
    from kb.search.index import _doc_fields, _lkey

    for d in docs[:60:7]:  # replace every 7th document, kept in a second segment
        writer.delete_by_term("lkey", _lkey(d.course, d.lesson))
    for d in docs[:60:7] + docs[60:]:
        writer.add_document(**_doc_fields(d))
    writer.commit(merge=False)
    wix.close()
    assert ix.search("主席团").total >= 0  # picks up the new segment
    with ix._lock:
        searcher = ix._get_searcher()
        assert len(searcher.leaf_searchers()) == 2
        assert searcher.reader().has_deletions()
    for text in EXACT_QUERIES:
        _assert_exact(ix, text)
        _assert_exact(ix, text, page=2, per_page=4)
    ix.close()


def test_bonus_keeps_the_top_hits_when_whoosh_prunes(tmp_path):
    """Whoosh's own collector (``searcher.search(q, limit=10)``) calls
    ``matcher.replace(minscore)`` every 10 hits once its heap is full. ``Bonus`` adds
    UNIT_BONUS outside its child, so it must ask the child for ``minscore - bonus``: passing
    the full minimum (WrappingMatcher.replace) made the child's union give up, which skipped
    every later match (the top 10 and ``total`` of 12 seen on the 2,000-law index). The index
    here is small, so the unions are built as Whoosh builds them above 5,000 documents
    (DefaultOr: a tree of UnionMatchers; smaller indexes preload the union and never prune)."""
    from whoosh import query as Q
    from whoosh.query.compound import DefaultOr

    from kb.search.index import Bonus, build_query, parse_query

    # each document scores higher than the one before, so every new hit raises the minimum
    docs = [doc("c", f"l{i}", "", f"第{i}课", "", "食品安全" + "的规定和其他内容，" * (60 - i))
            for i in range(40)]
    docs.append(doc("c", "best", "", "食品安全", "食品安全", "食品安全。"))
    ix = SearchIndex(tmp_path / "ix")
    ix.rebuild(docs)

    def large_index_form(q):
        if type(q) is Q.Or:
            return DefaultOr([large_index_form(x) for x in q.subqueries], boost=q.boost)
        if type(q) is Q.And:
            return Q.And([large_index_form(x) for x in q.subqueries], boost=q.boost)
        if type(q) is Q.AndMaybe:
            return Q.AndMaybe(large_index_form(q.a), large_index_form(q.b))
        if isinstance(q, Bonus):
            return Bonus(large_index_form(q.child), q.bonus)
        return q

    with ix._lock:
        searcher = ix._get_searcher()
        for text in ("食品安全", "食品安全 规定"):
            q = large_index_form(build_query(parse_query(text)))
            pruned = searcher.search(q, limit=10)
            full = searcher.search(q, limit=None)
            assert [h["url"] for h in pruned] == [h["url"] for h in full[:10]], text
        # (with pruning Whoosh's count is exact only where nothing could be skipped: one unit)
        one_unit = build_query(parse_query("食品安全"))
        assert len(searcher.search(large_index_form(one_unit), limit=10)) == 41
    ix.close()


# --------------------------------------------------------------------------- ranking quality
# The lessons in courses/ and the articles of two core laws, searched as a deputy would:
# the lesson (or article) that answers the question is among the first three hits. These held
# before and after the term-at-a-time evaluation (same top three for every query).

QUALITY = [
    ("主席团闭会期间做什么", "/courses/township-congress-basics/presidium#"),
    ("闭会期间主席团", "/courses/township-congress-basics/presidium#"),
    ("代表建议多久答复", "/courses/deputy-duties/writing-suggestions#交办和答复的期限"),
    ("罢免代表需要多少人联名", "/courses/congress-sessions/motions-inquiries-recall#"),
    ("人大代表可以被罢免吗", "/courses/deputy-duties/discipline-and-status#被选民罢免"),
    ("质询案", "/courses/congress-sessions/motions-inquiries-recall#质询案"),
    ("代表资格终止", "/courses/deputy-duties/discipline-and-status#代表资格终止"),
    ("执法检查怎么搞", "/courses/supervision/law-enforcement-inspection"),
    ("预算调整", "/courses/supervision/budget-and-final-accounts#预算调整"),
    ("代表小组", "/courses/deputy-duties/deputy-groups-and-voters"),
    ("述职评议", "/courses/supervision/work-and-duty-appraisal"),
    ("履职学习", "/courses/deputy-duties/training-is-a-duty"),
    ("选民怎样监督代表", "/courses/deputy-duties/rights-and-duties#代表也要接受监督"),
    ("会期", "/courses/township-congress-basics/presidium#闭会期间"),  # inside 闭会期间
    # law articles: 监督法 第六章 询问、专题询问和质询; 预算法 第七章 预算调整
    ("专题询问", "/laws/各级人民代表大会常务委员会监督法#第四十"),
    ("预算调整", "/laws/预算法#第六十九条"),
]


SHIPPED_LAWS = ["宪法相关法/各级人民代表大会常务委员会监督法(2024-11-08).md", "经济法/预算法(2018-12-29).md"]


@pytest.fixture(scope="module")
def shipped_index(tmp_path_factory):
    laws = [LAW_CORPUS / rel for rel in SHIPPED_LAWS]
    if not all(p.is_file() for p in laws):
        pytest.skip(f"law corpus not available at {LAW_CORPUS} (set KB_LAW_CORPUS)")
    from kb import create_app, dbmigrate, search_index
    from kb.cli import run_sync
    from kb.laws.library import import_paths

    from .conftest import REPO, make_config

    tmp = tmp_path_factory.mktemp("shipped")
    app = create_app(make_config(tmp, COURSES_DIR=str(REPO / "courses"),
                                 QUIZZES_DIR=str(tmp / "no-quizzes")))
    with app.app_context():
        dbmigrate.upgrade(app)
        import_paths(laws)
    run_sync(app)
    with app.app_context():
        yield search_index(app)
        from kb.extensions import db

        db.engine.dispose()


@pytest.mark.parametrize("text,expected", QUALITY)
def test_the_answer_is_among_the_first_three_hits(shipped_index, text, expected):
    from urllib.parse import unquote

    res = shipped_index.search(text, per_page=3)
    found = [unquote(u) for u in urls(res)]
    assert any(u.startswith(expected) for u in found), (text, found)
    _assert_exact(shipped_index, text, per_page=3)


def test_segments_are_written_as_separate_files(fresh):
    """Compound segments (one .seg file) are copied into memory when opened; kb writes each
    segment's files separately, in a rebuild and in an update."""
    gen_dir = fresh.root / fresh.status()["generation"]
    assert list(gen_dir.glob("*.seg")) == [] and list(gen_dir.glob("*.pst"))
    fresh.update_lessons([("presidium", "02-between-sessions")],
                         [doc("presidium", "02-between-sessions", "", "闭会期间", "", "主席团工作")])
    assert list(gen_dir.glob("*.seg")) == []
    assert fresh.search("主席团工作").hits[0].lesson == "02-between-sessions"
