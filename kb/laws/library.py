"""Import law texts into the library and look laws up by the names lessons use."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from ..content.files import DecodeError, decode_bytes
from ..extensions import db
from ..models import KbMeta, Law, LawArticle, utcnow
from .parse import LawParseError, ParsedLaw, parse_docx, parse_markdown

PREFIX = "中华人民共和国"
# Names lessons use for laws whose short title is still long.
ALIASES = {
    "地方组织法": "地方各级人民代表大会和地方各级人民政府组织法",
    "代表法": "全国人民代表大会和地方各级人民代表大会代表法",
    "选举法": "全国人民代表大会和地方各级人民代表大会选举法",
    "监督法": "各级人民代表大会常务委员会监督法",
    "全国人大组织法": "全国人民代表大会组织法",
}
SUFFIX_DATE_RE = re.compile(r"[（(]\s*\d{4}(?:[-年]\d{1,2}(?:[-月]\d{1,2}日?)?)?\s*年?[)）]\s*$")


def normalize_name(name: str) -> str:
    """Make law names comparable: no 《》〈〉 or spaces, no 中华人民共和国, no trailing (2022)."""
    name = re.sub(r"[《》〈〉<>\s\u3000\"“”]", "", name)
    name = SUFFIX_DATE_RE.sub("", name)
    name = name.replace("(", "（").replace(")", "）")
    return name.replace(PREFIX, "")


def law_slug(title: str) -> str:
    """The short title a law is known by: 中华人民共和国预算法 → 预算法."""
    return normalize_name(title)


@dataclass
class ImportResult:
    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    changed_keys: set[tuple[str, str]] = field(default_factory=set)
    removed_keys: set[tuple[str, str]] = field(default_factory=set)


def parse_file(name: str, data: bytes) -> ParsedLaw:
    """Parse a .md, .txt or .docx law file given as bytes."""
    lower = name.lower()
    if lower.endswith(".docx"):
        return parse_docx(data, name)
    if not lower.endswith((".md", ".txt", ".markdown")):
        raise LawParseError("not a law file: use .md, .txt or .docx")
    try:
        text = decode_bytes(data).text
    except DecodeError as exc:
        raise LawParseError(str(exc)) from exc
    return parse_markdown(text, name)


def category_of(path: Path) -> str:
    parts = [p for p in path.parts[:-1] if p not in ("地方性法规",)]
    return parts[-1] if parts else ""


def import_law(parsed: ParsedLaw, source_name: str, data: bytes, category: str,
               result: ImportResult) -> Law | None:
    """Store one parsed version; keep older versions and mark them superseded."""
    slug = law_slug(parsed.title)
    digest = hashlib.sha256(data).hexdigest()
    existing = db.session.scalar(select(Law).where(Law.slug == slug,
                                                   Law.version_date == parsed.version_date))
    if existing is not None and existing.content_hash == digest:
        result.unchanged.append(f"{slug} ({parsed.version_date})")
        return existing
    versions = db.session.scalars(select(Law).where(Law.slug == slug)).all()
    old_current = [v for v in versions if v.is_current]
    if existing is not None:
        db.session.delete(existing)
        db.session.flush()
        versions = [v for v in versions if v.id != existing.id]
    law = Law(slug=slug, title=parsed.title, category=category, version_date=parsed.version_date,
              history=parsed.history, preamble=parsed.preamble, chapters=parsed.chapters,
              source_name=source_name, content_hash=digest, imported_at=utcnow())
    law.articles = [LawArticle(number=a.number, position=i, label=a.label, chapter=a.chapter,
                               section=a.section, text=a.text)
                    for i, a in enumerate(parsed.articles)]
    db.session.add(law)
    dates = [v.version_date for v in versions if v.version_date]
    law.is_current = (not versions or parsed.version_date is None
                      or all(parsed.version_date >= d for d in dates))
    for v in versions:
        if law.is_current and v.is_current:
            v.is_current = False
            result.superseded.append(f"{slug} ({v.version_date})")
    for v in old_current:
        result.removed_keys.update((slug, a.label) for a in v.articles)
    current = law if law.is_current else next((v for v in versions if v.is_current), None)
    if current is not None:
        result.changed_keys.update((slug, a.label) for a in current.articles)
    result.imported.append(f"{slug} ({parsed.version_date})")
    return law


def import_paths(paths: list[Path]) -> ImportResult:
    """Import every law file under the given files/folders; one bad file never stops the rest."""
    result = ImportResult()
    files: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_dir():
            files += [(f, path) for f in sorted(path.rglob("*")) if f.is_file()
                      and f.suffix.lower() in (".md", ".txt", ".docx")]
        else:
            files.append((path, path.parent))
    for file, root in files:
        try:
            data = file.read_bytes()
            parsed = parse_file(file.name, data)
            if not parsed.articles:
                result.errors.append(f"{file}:1: no articles (第X条) found; not imported")
                continue
            import_law(parsed, str(file.relative_to(root)) if file.is_relative_to(root) else file.name,
                       data, category_of(file.relative_to(root)) if file.is_relative_to(root) else "",
                       result)
            db.session.flush()
        except (LawParseError, OSError) as exc:
            result.errors.append(f"{file}:1: {exc}")
    if result.imported:
        bump_library_version()  # lessons re-render (citation links) on the next sync
    db.session.commit()
    return result


def bump_library_version() -> None:
    meta = db.session.get(KbMeta, "law_library_version")
    if meta is None:
        db.session.add(KbMeta(key="law_library_version", value="1"))
    else:
        meta.value = str(int(meta.value or 0) + 1)


def library_version() -> str:
    meta = db.session.get(KbMeta, "law_library_version")
    return meta.value if meta else "0"


class LawIndex:
    """Name → law lookups for citations, loaded once per sync or request cache."""

    def __init__(self):
        laws = db.session.scalars(select(Law)).all()
        self.by_slug: dict[str, list[Law]] = {}
        for law in laws:
            self.by_slug.setdefault(law.slug, []).append(law)
        for versions in self.by_slug.values():
            versions.sort(key=lambda v: (v.version_date is None, v.version_date))
        self.names = sorted(set(self.by_slug) | set(ALIASES), key=len, reverse=True)

    @property
    def empty(self) -> bool:
        return not self.by_slug

    def resolve_name(self, name: str) -> str | None:
        key = normalize_name(name)
        key = ALIASES.get(key, key)
        return key if key in self.by_slug else None

    def current(self, slug: str) -> Law | None:
        versions = self.by_slug.get(slug, [])
        return next((v for v in versions if v.is_current), versions[-1] if versions else None)

    def version_for_year(self, slug: str, year: int | None) -> Law | None:
        versions = self.by_slug.get(slug, [])
        if year is None:
            return self.current(slug)
        matching = [v for v in versions if v.version_date and v.version_date.year == year]
        return matching[-1] if matching else None


def law_article_documents(law: Law) -> list:
    """Return one search document per article of ``law``."""
    from urllib.parse import quote

    from ..search import SearchDoc

    return [SearchDoc(kind="law_article", course=law.slug, lesson=a.label, anchor=a.label,
                      url=f"/laws/{quote(law.slug)}#{quote(a.label)}", title=law.title,
                      heading=" ".join(x for x in (a.chapter, a.section, a.label) if x),
                      body=a.text, course_title=law.slug, tags=[], audience=[])
            for a in law.articles]
