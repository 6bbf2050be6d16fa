"""Find law citations in text (「地方组织法第十九条」, 「《代表法》（2025年）第四十七条第二款」),
resolve them against the library, link them in lesson HTML and check them (``kb check``)."""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from urllib.parse import quote

from flask_babel import gettext as _

from .library import LawIndex, normalize_name
from .numerals import CHARS, cn_to_int

NUM = rf"[{CHARS}\d]+"
CITE_RE = re.compile(
    rf"(?:《(?P<quoted>[^《》\n]{{2,80}}(?:《[^《》\n]{{2,80}}》[^《》\n]{{0,20}})?)》"
    rf"|(?P<bare>[\u4e00-\u9fff〈〉《》、（）]{{2,80}}?))"
    rf"\s*(?:[（(]\s*(?P<year>\d{{4}})\s*年?\s*(?:版|修订|修正)?[）)])?\s*"
    rf"第(?P<article>{NUM})条(?:第(?P<para>{NUM})款)?(?:第(?P<item>{NUM})项)?"
)


@dataclass(frozen=True)
class Citation:
    text: str  # as written, from the law name to the article (款/项 included)
    start: int
    end: int
    name: str
    slug: str | None
    year: int | None
    article: int
    paragraph: int | None = None
    item: int | None = None

    @property
    def label(self) -> str:
        from .numerals import int_to_cn

        return f"第{int_to_cn(self.article)}条"


def find_citations(text: str, index: LawIndex | None) -> list[Citation]:
    """Return citations in ``text``; a bare name counts only when the library knows it."""
    out = []
    for m in CITE_RE.finditer(text):
        article = cn_to_int(m.group("article"))
        if article is None:
            continue
        year = int(m.group("year")) if m.group("year") else None
        para = cn_to_int(m.group("para")) if m.group("para") else None
        item = cn_to_int(m.group("item")) if m.group("item") else None
        if m.group("quoted"):
            name, start = m.group("quoted"), m.start()
            slug = index.resolve_name(name) if index else None
            out.append(Citation(m.group(0), start, m.end(), name, slug, year, article, para, item))
            continue
        bare = m.group("bare")
        found = None
        # The regex reads from the left, so a bare name may carry words before it
        # (根据地方组织法…): take the longest known suffix.
        for k in range(len(bare)):
            candidate = bare[k:]
            quoted = candidate.startswith("《") and candidate.endswith("》")
            slug = index.resolve_name(candidate) if index else _known_alias(candidate)
            if slug or quoted:
                found = (k, candidate.strip("《》") if quoted else candidate, slug)
                break
        if found is None:
            continue
        k, name, slug = found
        start = m.start("bare") + k
        out.append(Citation(text[start:m.end()], start, m.end(), name, slug, year, article, para, item))
    return out


def _known_alias(name: str) -> str | None:
    from .library import ALIASES

    key = normalize_name(name)
    return key if key in ALIASES or key in ALIASES.values() else None


def article_url(slug: str, label: str, version=None) -> str:
    url = f"/laws/{quote(slug)}"
    if version is not None:
        url += f"?v={version.isoformat()}"
    return f"{url}#{quote(label)}"


_SKIP_TAGS = ("a", "code", "pre", "h1", "h2", "h3", "h4")
_TAG_RE = re.compile(r"(<[^>]+>)")


def link_citations(html: str, index: LawIndex) -> str:
    """Wrap resolvable citations in the text of sanitised lesson HTML with links to articles."""
    if index.empty:
        return html
    parts = _TAG_RE.split(html)
    depth = 0
    out = []
    for part in parts:
        if part.startswith("<"):
            name = re.match(r"</?\s*([a-zA-Z0-9]+)", part)
            tag = name.group(1).lower() if name else ""
            if tag in _SKIP_TAGS:
                depth += -1 if part.startswith("</") else (0 if part.endswith("/>") else 1)
            out.append(part)
            continue
        if depth > 0 or "条" not in part:
            out.append(part)
            continue
        text = html_lib.unescape(part)
        pieces, pos = [], 0
        for c in find_citations(text, index):
            law = index.version_for_year(c.slug, c.year) if c.slug else None
            if law is None and c.slug:
                law = index.current(c.slug)
            if law is None or not any(a.number == c.article for a in law.articles):
                continue
            version = None if law.is_current else law.version_date
            pieces.append(html_lib.escape(text[pos:c.start], quote=False))
            pieces.append(
                f'<a class="cite" href="{html_lib.escape(article_url(law.slug, c.label, version))}" '
                f'data-law="{html_lib.escape(law.slug)}" data-article="{c.label}"'
                + (f' data-version="{law.version_date.isoformat()}"' if version else "")
                + f">{html_lib.escape(text[c.start:c.end], quote=False)}</a>"
            )
            pos = c.end
        if not pieces:
            out.append(part)
            continue
        pieces.append(html_lib.escape(text[pos:], quote=False))
        out.append("".join(pieces))
    return "".join(out)


def _normalize_article(text: str) -> str:
    return re.sub(r"\s+", "", re.sub(r"^第[^条]+条", "", text))


def check_citation(c: Citation, index: LawIndex) -> tuple[str, str] | None:
    """Return (severity, message) when a citation does not resolve or its article changed (the
    message in the current language: the reader's, or the operator's on the command line)."""
    if c.slug is None:
        return "error", _("引用无法对应：「%(text)s」（法律库中没有名为 %(name)s 的法律）", text=c.text, name=c.name)
    law = index.version_for_year(c.slug, c.year)
    if law is None:
        years = ", ".join(str(v.version_date.year) for v in index.by_slug[c.slug] if v.version_date)
        return "error", _("引用无法对应：「%(text)s」（法律库中 %(slug)s 的版本是 %(years)s，没有 %(year)s 年版）",
                          text=c.text, slug=c.slug, years=years or _("无日期"), year=c.year)
    article = next((a for a in law.articles if a.number == c.article), None)
    if article is None:
        return "error", _("引用无法对应：「%(text)s」（%(slug)s 没有%(label)s）", text=c.text, slug=law.slug,
                          label=c.label)
    current = index.current(c.slug)
    if current is not None and current.id != law.id and (
        current.version_date and law.version_date and current.version_date > law.version_date
    ):
        newer = next((a for a in current.articles if a.number == c.article), None)
        if newer is None or _normalize_article(newer.text) != _normalize_article(article.text):
            return "warning", _("「%(text)s」引用的是 %(year)s 年版；%(label)s在 %(date)s 版中已修改，请核对",
                                text=c.text, year=law.version_date.year, label=c.label,
                                date=current.version_date.isoformat())
    return None
