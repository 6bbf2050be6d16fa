"""Parse law texts into chapters, sections and articles.

Three inputs share one parser: the Markdown layout of the national laws database mirrors
(``# title``, history lines, ``<!-- INFO END -->``, ``## 第X章``, ``### 第X节``, articles as
paragraphs starting ``第X条``), plain ``.txt`` (chapter lines without ``#``) and ``.docx``
(paragraphs read with python-docx). Documents without ``第X条`` (decisions with ``一、二、``
items) get one article per numbered item.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import date

from .numerals import CHARS, cn_to_int

SPACE = "[ \u3000\t]"
ARTICLE_RE = re.compile(rf"^第([{CHARS}\d]+)条(?:{SPACE}+|$)(.*)$")
CHAPTER_RE = re.compile(rf"^(第[{CHARS}\d]+[编章]|序言|附则)({SPACE}.*)?$")
SECTION_RE = re.compile(rf"^第[{CHARS}\d]+节({SPACE}.*)?$")
ITEM_RE = re.compile(rf"^([{CHARS}]+)、(.*)$")
DATE_RE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")
FILE_DATE_RE = re.compile(r"\((\d{4})-(\d{2})-(\d{2})\)")


class LawParseError(ValueError):
    pass


@dataclass
class ParsedArticle:
    number: int
    label: str  # 第十九条, or 一 for a decision's numbered item
    chapter: str
    section: str
    paragraphs: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return self.label

    @property
    def text(self) -> str:
        return "\n".join(self.paragraphs)


@dataclass
class ParsedLaw:
    title: str
    history: list[str]
    version_date: date | None
    preamble: list[str]
    articles: list[ParsedArticle]
    chapters: list[str]
    sections: list[str]


def _norm(line: str) -> str:
    return line.replace("\u3000", " ").strip()


def _heading(line: str) -> tuple[int, str] | None:
    m = re.match(r"^(#{1,6})\s+(.*)$", line)
    if m:
        return len(m.group(1)), _norm(m.group(2))
    return None


def _squash(text: str) -> str:
    """``第一章  总  则`` → ``第一章 总则``: the corpus pads short headings with spaces."""
    text = re.sub(r"\s+", " ", text.replace("\u3000", " ")).strip()
    head, _, rest = text.partition(" ")
    return f"{head} {rest.replace(' ', '')}".strip() if rest else head


def version_date(history: list[str], filename: str = "") -> date | None:
    m = FILE_DATE_RE.search(filename)
    if m:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    dates = [date(int(y), int(mo), int(d)) for line in history for y, mo, d in DATE_RE.findall(line)]
    return max(dates) if dates else None


def parse_lines(lines: list[str], filename: str = "") -> ParsedLaw:
    """Parse a law given as lines (Markdown or plain text)."""
    lines = [line.rstrip("\n").rstrip() for line in lines]
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines):
        raise LawParseError("the file is empty")
    first = _heading(lines[i])
    title = first[1] if first else _norm(lines[i])
    if not title:
        raise LawParseError("no title on the first line")
    i += 1
    history: list[str] = []
    marker = next((k for k in range(i, len(lines)) if lines[k].strip() == "<!-- INFO END -->"), None)
    if marker is not None:
        history = [_norm(ln) for ln in lines[i:marker] if _norm(ln) and DATE_RE.search(ln)]
        i = marker + 1
    else:
        # Plain text: history lines are the dated lines before the first structural line.
        while i < len(lines):
            text = _norm(lines[i])
            if not text or (DATE_RE.search(text) and len(text) < 150
                            and not ARTICLE_RE.match(text) and not CHAPTER_RE.match(text)):
                if text:
                    history.append(text.strip("（）()"))
                i += 1
                continue
            break

    chapter = section = ""
    chapters: list[str] = []
    sections: list[str] = []
    articles: list[ParsedArticle] = []
    preamble: list[str] = []
    compact_title = title.replace(" ", "")
    for raw in lines[i:]:
        text = _norm(raw)
        if not text or text.startswith("<!--"):
            continue
        heading = _heading(raw)
        body = heading[1] if heading else text
        # In Markdown only headings are structure (an amendment may quote "第七节 …" in its
        # text); plain text and .docx have no markup, so chapter lines are recognised by form.
        if heading is not None or (marker is None and (CHAPTER_RE.match(body) or SECTION_RE.match(body))):
            if body.replace(" ", "") in compact_title and not CHAPTER_RE.match(body):
                continue  # the title repeated (and broken across lines) after the marker
            if SECTION_RE.match(body) or (heading and heading[0] >= 3):
                section = _squash(body)
                sections.append(section)
            else:
                chapter, section = _squash(body), ""
                chapters.append(chapter)
            continue
        m = ARTICLE_RE.match(text)
        if m:
            number = cn_to_int(m.group(1))
            if number is not None:
                label = f"第{m.group(1)}条"
                articles.append(ParsedArticle(number, label, chapter, section,
                                              [text]))
                continue
        if articles:
            articles[-1].paragraphs.append(text)
        else:
            preamble.append(text)
    if not articles:
        articles = _items_as_articles(preamble)
        if articles:
            preamble = preamble[: next((k for k, p in enumerate(preamble) if ITEM_RE.match(p)), 0)]
    return ParsedLaw(title, history, version_date(history, filename), preamble, articles,
                     chapters, sections)


def _items_as_articles(paragraphs: list[str]) -> list[ParsedArticle]:
    """Decisions number their provisions 一、二、…: make each one an article."""
    out: list[ParsedArticle] = []
    expected = 1
    for p in paragraphs:
        m = ITEM_RE.match(p)
        if m and cn_to_int(m.group(1)) == expected:
            out.append(ParsedArticle(expected, m.group(1), "", "", [p]))
            expected += 1
        elif out:
            out[-1].paragraphs.append(p)
    return out


def parse_markdown(text: str, filename: str = "") -> ParsedLaw:
    return parse_lines(text.replace("\r\n", "\n").split("\n"), filename)


def parse_docx(data: bytes, filename: str = "") -> ParsedLaw:
    """Parse a .docx as downloaded from the national laws database."""
    try:
        import docx
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise LawParseError("python-docx is not installed") from exc
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise LawParseError(f"not a readable .docx file ({type(exc).__name__})") from exc
    return parse_lines([p.text for p in document.paragraphs], filename)
