"""Turn the real laws of ``cn-law/bulk`` into kb course folders (benchmark data, never committed).

One lesson per law: ``<out>/<course>/NNN-lawK.md`` with YAML front matter (title = the law's
``#`` title, minutes from its length, tags), the history lines as the lesson intro and the law's
``##`` chapters as the lesson's H2 sections (each becomes one search document). Courses are
the corpus's top-level folders; ``DLC`` (1,116 local regulations, more than the 999 lessons a
course folder can number) is split by province. Folders are taken in a fixed order and the
laws in each sorted by path, so ``--laws N`` always picks the same laws.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpora" / "cn-law" / "bulk"

# Corpus folder (relative to bulk/) -> (course slug, course title). DLC is split by province.
COURSES: tuple[tuple[str, str, str], ...] = (
    ("宪法", "law-constitution", "宪法"),
    ("宪法相关法", "law-constitutional", "宪法相关法"),
    ("民法典", "law-civil-code", "民法典"),
    ("民法商法", "law-civil-commercial", "民法商法"),
    ("行政法", "law-administrative", "行政法"),
    ("经济法", "law-economic", "经济法"),
    ("社会法", "law-social", "社会法"),
    ("刑法", "law-criminal", "刑法"),
    ("诉讼与非诉讼程序法", "law-procedure", "诉讼与非诉讼程序法"),
    ("行政法规", "law-regulations", "行政法规"),
    ("部门规章", "law-rules", "部门规章"),
    ("司法解释", "law-interpretations", "司法解释"),
    ("其他", "law-other", "其他"),
    ("DLC/北京地方法规", "local-beijing", "北京市地方性法规"),
    ("DLC/上海地方法规", "local-shanghai", "上海市地方性法规"),
    ("DLC/浙江地方法规", "local-zhejiang", "浙江省地方性法规"),
    ("DLC/山东地方法规", "local-shandong", "山东省地方性法规"),
    ("DLC/河南地方法规", "local-henan", "河南省地方性法规"),
    ("DLC/重庆地方法规", "local-chongqing", "重庆市地方性法规"),
    ("DLC/广东地方法规", "local-guangdong", "广东省地方性法规"),
)

INFO_END = "<!-- INFO END -->"
_H1 = re.compile(r"^#\s+(.*?)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


@dataclass
class LawLesson:
    course: str  # course slug
    slug: str  # lesson slug (lawK)
    path: Path  # the lesson file written
    source: Path  # the law file
    title: str
    chars: int
    chapters: int


def law_files(corpus: Path = CORPUS) -> list[tuple[str, str, Path]]:
    """(course slug, course title, law path) for every law, in course order then path order."""
    out = []
    for folder, slug, title in COURSES:
        base = corpus / folder
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*.md"), key=lambda p: str(p)):
            out.append((slug, title, p))
    return out


def convert(text: str) -> tuple[str, str, int]:
    """Return (title, lesson body Markdown, number of ## chapters) for one law file."""
    text = text.replace("\r\n", "\n")
    head, sep, body = text.partition(INFO_END)
    if not sep:  # no header block: the whole file is the body
        head, body = "", text
    title = ""
    history = []
    for line in head.split("\n"):
        m = _H1.match(line)
        if m:
            if not title:
                title = m.group(1).replace("\u3000", " ").strip()
            else:  # a second H1 (subtitle, e.g. 民法典 books) joins the intro
                history.append(m.group(1).strip())
            continue
        if line.strip():
            history.append(line.strip())
    out_lines = []
    chapters = 0
    for line in body.split("\n"):
        m = _HEADING.match(line)
        if m:
            level = len(m.group(1))
            heading = m.group(2).replace("\u3000", " ").strip()
            heading = re.sub(r"\s+", " ", heading)
            if level == 1:  # a repeated title inside the body: keep it as plain text
                out_lines.append(heading)
                continue
            if level == 2:
                chapters += 1
            out_lines.append(f"{'#' * level} {heading}")
            continue
        out_lines.append(line.rstrip())
    intro = "\n\n".join(history)
    md = (intro + "\n\n" if intro else "") + "\n".join(out_lines).strip() + "\n"
    return title or "（无标题）", md, chapters


def _front_matter(title: str, minutes: int, tags: list[str]) -> str:
    # JSON strings are valid YAML flow scalars: safe for any title.
    return (
        "---\n"
        f"title: {json.dumps(title[:190], ensure_ascii=False)}\n"
        f"summary: {json.dumps('法律原文：' + title[:150], ensure_ascii=False)}\n"
        f"minutes: {minutes}\n"
        f"tags: {json.dumps(tags, ensure_ascii=False)}\n"
        "---\n"
    )


def build_courses(out: Path, laws: int | None = None, corpus: Path = CORPUS) -> list[LawLesson]:
    """Write the course folders for the first ``laws`` laws (all by default) under ``out``."""
    files = law_files(corpus)
    if laws is not None:
        files = files[: max(1, laws)]
    out.mkdir(parents=True, exist_ok=True)
    lessons: list[LawLesson] = []
    positions: dict[str, int] = {}
    titles: dict[str, str] = {}
    for k, (course, course_title, path) in enumerate(files, start=1):
        positions[course] = positions.get(course, 0) + 1
        pos = positions[course]
        if pos > 999:
            raise RuntimeError(f"course {course} has more than 999 laws")
        titles[course] = course_title
        title, body, chapters = convert(path.read_text(encoding="utf-8"))
        chars = len(body)
        minutes = max(1, min(600, round(chars / 500)))
        tags = ["法律原文", course_title]
        cdir = out / course
        cdir.mkdir(exist_ok=True)
        slug = f"law{k}"
        lesson_path = cdir / f"{pos:03d}-{slug}.md"
        lesson_path.write_text(_front_matter(title, minutes, tags) + body, encoding="utf-8")
        lessons.append(LawLesson(course, slug, lesson_path, path, title, chars, chapters))
    for order, (_, course, course_title) in enumerate(COURSES, start=10):
        if course in titles:
            (out / course / "_course.md").write_text(
                "---\n"
                f"title: {json.dumps('法律原文：' + course_title, ensure_ascii=False)}\n"
                f"summary: {json.dumps('基准测试用的法律原文（' + course_title + '）', ensure_ascii=False)}\n"
                f"order: {order}\n"
                "---\n"
                "本课程由基准测试从 cn-law 语料生成，每部法律一课。\n",
                encoding="utf-8",
            )
    return lessons
