"""Render lesson Markdown to sanitised HTML once, at sync time.

Python-Markdown with tables, fenced code, admonitions and a TOC whose heading ids keep Chinese
characters (the default slugify drops CJK), links between lessons rewritten to lesson URLs and
recorded for checking, then nh3 with heading ids and code classes allowed.
"""

from __future__ import annotations

import html as html_lib
import posixpath
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import quote, unquote, urlsplit

import markdown
import nh3
from markdown.extensions import Extension
from markdown.extensions.toc import slugify_unicode
from markdown.treeprocessors import Treeprocessor

# Bump when rendering changes so every lesson is re-rendered on the next sync.
RENDER_VERSION = "3"

LESSON_FILE_RE = re.compile(r"^(\d{1,3})-([^/\\]+)\.md$")

ALLOWED_TAGS = set(nh3.ALLOWED_TAGS) | {
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tfoot", "tr", "th", "td",
    "pre", "code", "div", "span", "mark", "details", "summary", "hr", "sup", "sub", "caption",
}
ALLOWED_ATTRIBUTES = {
    **{h: {"id"} for h in ("h1", "h2", "h3", "h4", "h5", "h6")},
    "a": {"href", "title", "class"},
    "code": {"class"},
    "pre": {"class"},
    "div": {"class"},
    "p": {"class"},
    "span": {"class"},
    "th": {"align", "colspan", "rowspan"},
    "td": {"align", "colspan", "rowspan"},
    "ol": {"start"},
    "abbr": {"title"},
}


def slugify(value: str, separator: str = "-") -> str:
    """Make a heading id that keeps Chinese characters (``第一章 总则`` → ``第一章-总则``)."""
    return slugify_unicode(value, separator)


def lesson_slug(filename: str) -> tuple[int, str] | None:
    """Return (position, slug) for a lesson file name ``NN-slug.md``, else None."""
    m = LESSON_FILE_RE.match(filename)
    if not m:
        return None
    return int(m.group(1)), m.group(2)


@dataclass
class Link:
    """A relative link from a lesson to another lesson file, for the link check."""

    target_course: str
    target_file: str
    anchor: str
    line: int
    href: str


@dataclass
class Rendered:
    html: str
    toc: list[dict]
    sections: list[dict]
    links: list[Link] = field(default_factory=list)


class _LessonLinks(Treeprocessor):
    def __init__(self, md, course: str, source: str, line_offset: int):
        super().__init__(md)
        self.course = course
        self.source = source
        self.line_offset = line_offset
        self.links: list[Link] = []

    def _line_of(self, href: str) -> int:
        pos = self.source.find(href)
        return self.line_offset + (self.source.count("\n", 0, pos) if pos >= 0 else 0)

    def run(self, root):
        for a in root.iter("a"):
            href = a.get("href", "")
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or not parts.path.endswith(".md"):
                continue
            path = posixpath.normpath(posixpath.join(self.course, unquote(parts.path)))
            course, _, filename = path.rpartition("/")
            anchor = slugify(unquote(parts.fragment)) if parts.fragment else ""
            parsed = lesson_slug(filename)
            slug = parsed[1] if parsed else filename[:-3]
            url = f"/courses/{quote(course)}/{quote(slug)}" + (f"#{quote(anchor)}" if anchor else "")
            self.links.append(Link(course, filename, anchor, self._line_of(href), href))
            a.set("href", url)


class _LessonLinkExtension(Extension):
    def __init__(self, processor_args):
        super().__init__()
        self.processor_args = processor_args
        self.processor = None

    def extendMarkdown(self, md):
        self.processor = _LessonLinks(md, *self.processor_args)
        md.treeprocessors.register(self.processor, "kb_lesson_links", 5)


class _Sections(HTMLParser):
    """Split rendered HTML into the intro and one section per H2, as plain text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections = [{"anchor": "", "heading": "", "text": ""}]
        self._in_h2 = False
        self._parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self._flush()
            self.sections.append({"anchor": dict(attrs).get("id", ""), "heading": "", "text": ""})
            self._in_h2 = True
        elif tag in ("p", "li", "br", "tr", "h3", "h4", "div", "pre", "td", "th"):
            self._parts.append(" ")

    def handle_endtag(self, tag):
        if tag == "h2":
            self.sections[-1]["heading"] = "".join(self._parts).strip()
            self._parts = []
            self._in_h2 = False

    def handle_data(self, data):
        self._parts.append(data)

    def _flush(self):
        text = re.sub(r"\s+", " ", "".join(self._parts)).strip()
        self.sections[-1]["text"] = (self.sections[-1]["text"] + " " + text).strip()
        self._parts = []

    def close(self):
        super().close()
        self._flush()


def sanitize(html: str) -> str:
    """Clean HTML with nh3, keeping heading ids and code classes."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "tel"},
        link_rel="noopener noreferrer",
    )


def render_markdown(
    text: str,
    *,
    course: str = "",
    line_offset: int = 1,
    extensions: list | None = None,
) -> Rendered:
    """Render a lesson body. ``line_offset`` is the file line of the body's first line."""
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot be encoded
    links = _LessonLinkExtension((course, text, line_offset))
    md = markdown.Markdown(
        extensions=[
            "tables",
            "fenced_code",
            "admonition",
            "sane_lists",
            "def_list",
            "abbr",
            "md_in_html",
            links,
            *(extensions or []),
        ],
        extension_configs={},
        output_format="html",
    )
    # toc last so it sees the final headings; our slugify keeps CJK characters.
    from markdown.extensions.toc import TocExtension

    TocExtension(slugify=slugify, toc_depth="2-3", permalink=False).extendMarkdown(md)
    html = sanitize(md.convert(text))
    toc = _flatten_toc(getattr(md, "toc_tokens", []))
    parser = _Sections()
    parser.feed(html)
    parser.close()
    sections = [s for s in parser.sections if s["text"] or s["heading"]]
    return Rendered(html, toc, sections, links.processor.links if links.processor else [])


def _flatten_toc(tokens, out=None) -> list[dict]:
    out = [] if out is None else out
    for t in tokens:
        out.append({"id": t["id"], "name": html_lib.unescape(t["name"]), "level": t["level"]})
        _flatten_toc(t.get("children", []), out)
    return out
