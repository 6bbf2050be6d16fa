"""Property tests: the core's parsers never raise on any input (front matter, Markdown, law
texts, citations, search queries)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kb.content import frontmatter
from kb.content.files import DecodeError, decode_bytes
from kb.content.render import render_markdown
from kb.laws.cite import find_citations
from kb.laws.parse import LawParseError, parse_markdown

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x4E80)
TEXTISH = st.text(st.one_of(CJK, st.characters(), st.sampled_from(list("第条款项章节一二三十百《》〈〉（）() \n#-:[]{}'\"!"))), max_size=400)


@FAST
@given(TEXTISH)
def test_front_matter_never_raises(body):
    for text in (body, "---\n" + body, "---\n" + body + "\n---\n正文"):
        fm = frontmatter.split(text)
        if not fm.fatal:
            frontmatter.validate(fm, "lesson")
            frontmatter.validate(fm, "course")


@FAST
@given(st.binary(max_size=300))
def test_decoding_any_bytes_is_text_or_a_clear_error(raw):
    try:
        assert isinstance(decode_bytes(raw).text, str)
    except DecodeError as exc:
        assert str(exc)


@FAST
@given(TEXTISH)
def test_markdown_renders_and_sanitises_anything(text):
    rendered = render_markdown(text + "\n<script>alert(1)</script>", course="c")
    assert "<script" not in rendered.html


@FAST
@given(TEXTISH)
def test_law_parser_never_raises_unexpectedly(text):
    try:
        parse_markdown(text)
    except LawParseError:
        pass


@FAST
@given(TEXTISH)
def test_citations_are_well_formed(text):
    for c in find_citations(text, None):
        assert text[c.start:c.end] == c.text and c.article >= 0
