"""Quiz files (``quizzes/<slug>.yaml``): parse with line numbers, validate, sync into the DB."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml
from flask_babel import gettext as _
from sqlalchemy import select

from kb import db
from kb.models import Course, Lesson, utcnow

from .grading import OPTION_KEYS, TYPES, option_keys, parse_bool
from .models import Question, Quiz

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
QID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHOW_AFTER = ("answers", "score")
QUIZ_KEYS = {"title", "course", "pass_score", "time_limit_minutes", "attempts", "grading", "draw",
             "shuffle_options", "show_after", "one_per_screen", "questions"}
MAX_TITLE, MAX_COURSE, MAX_REF = 200, 100, 300  # the columns' lengths (models.py)
QUESTION_KEYS = {"id", "type", "stem", "options", "answer", "explanation", "source", "lesson",
                 "partial_credit"}


class Node:
    """A YAML value with the line (1-based) it starts on; mappings/lists hold Nodes."""

    __slots__ = ("value", "line")

    def __init__(self, value, line):
        self.value, self.line = value, line

    def plain(self):
        v = self.value
        if isinstance(v, dict):
            return {k: n.plain() for k, n in v.items()}
        if isinstance(v, list):
            return [n.plain() for n in v]
        return v


# A file whose aliases expand to more values than this is refused (a "billion laughs" file).
MAX_NODES = 100_000
# Text that cannot be stored or shown: NUL and other control characters, lone surrogates.
BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def bad_char(text: str) -> str | None:
    """The first character of ``text`` that cannot be stored (as ``U+0000``), or None."""
    m = BAD_CHARS.search(text)
    return f"U+{ord(m.group()):04X}" if m else None


def _construct(loader, node):
    """A scalar's value; a value PyYAML cannot build (2020-13-45, 5000 digits) is a line error."""
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:
        raise QuizFileError(node.start_mark.line + 1, _(
            "无法读取的值 %(value)s：%(error)s", value=_excerpt(node), error=exc)) from exc


def _excerpt(node) -> str:
    value = node.value if isinstance(node, yaml.ScalarNode) else ""
    return repr(value[:40] + ("…" if len(value) > 40 else ""))


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_cycles(root) -> None:
    """Raise QuizFileError when an alias (*a) points at a value that contains it (&a [*a])."""
    state: dict[int, int] = {}  # id -> 1 while its children are visited, 2 when done
    stack = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            state[id(node)] = 2
            continue
        if state.get(id(node)) == 2:
            continue
        state[id(node)] = 1
        stack.append((node, True))
        for child in _children(node):
            if state.get(id(child)) == 1:
                raise QuizFileError(child.start_mark.line + 1, _("YAML 别名（*）引用了它自己所在的值"))
            if id(child) not in state:
                stack.append((child, False))


def _walk(loader, root) -> Node:
    """The node tree as Nodes, built without recursion (aliases are expanded, within limits)."""
    _check_cycles(root)
    budget = MAX_NODES
    out: list = [None]
    stack = [(root, out, 0)]  # (yaml node, the container to fill, its slot)
    while stack:
        node, parent, slot = stack.pop()
        budget -= 1
        if budget < 0:
            raise QuizFileError(node.start_mark.line + 1, _(
                "文件展开后过大：别名（*）引用太多，超过 %(n)s 个值", n=MAX_NODES))
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result = Node({}, line)
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise QuizFileError(knode.start_mark.line + 1, _("字段名应是文字，不能是列表或映射"))
                key = _construct(loader, knode)
                key = key if isinstance(key, str) else str(key)
                if key in result.value:
                    raise QuizFileError(knode.start_mark.line + 1, _("字段 %(key)r 重复", key=key))
                result.value[key] = None
                stack.append((vnode, result.value, key))
        elif isinstance(node, yaml.SequenceNode):
            result = Node([None] * len(node.value), line)
            for i, child in enumerate(node.value):
                stack.append((child, result.value, i))
        else:
            result = Node(_construct(loader, node), line)
        parent[slot] = result
    return out[0]


class QuizFileError(Exception):
    def __init__(self, line, message):
        super().__init__(message)
        self.line = line


def load_nodes(text: str) -> Node:
    """Compose YAML keeping line numbers; raise QuizFileError with the line on a syntax error."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        if root is None:
            raise QuizFileError(1, _("文件是空的"))
        return _walk(loader, root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise QuizFileError((mark.line + 1) if mark else 1,
                            _("YAML 语法错误：%(error)s", error=exc.problem or exc)) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, U+FFFE…)
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        code = exc.character if isinstance(exc.character, int) else 0
        raise QuizFileError(line, _("文件含有不允许的字符 U+%(code)04X，请删除", code=code)) from exc
    except yaml.YAMLError as exc:
        raise QuizFileError(1, _("YAML 语法错误：%(error)s", error=exc)) from exc
    except RecursionError as exc:  # "[[[[…": the composer is recursive
        raise QuizFileError(1, _("YAML 嵌套层数过多")) from exc
    finally:
        if loader is not None:
            loader.dispose()


def decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise QuizFileError(1, _("文件既不是 UTF-8 也不是 GBK 编码，请另存为 UTF-8")) from exc


# -- one question -------------------------------------------------------------------------------

class LessonRefs:
    """Checks ``course/lesson-slug#anchor`` references against the synced lessons."""

    def __init__(self):
        self._lessons = None

    def _load(self):
        if self._lessons is None:
            rows = db.session.execute(
                select(Course.slug, Lesson.slug, Lesson.toc)
                .join(Lesson, Lesson.course_id == Course.id)
                .where(Lesson.is_active.is_(True), Course.is_active.is_(True)))
            self._lessons = {}
            for cslug, lslug, toc in rows:
                anchors = set()
                stack = list(toc or [])
                while stack:
                    item = stack.pop()
                    if isinstance(item, dict):
                        anchors.add(item.get("id") or item.get("anchor") or "")
                        stack.extend(item.get("children") or [])
                self._lessons[(cslug, lslug)] = anchors
        return self._lessons

    def courses(self) -> set[str]:
        return {c for c, _ in self._load()}

    def check(self, ref: str) -> str | None:
        """Return an error message, or None when the reference exists."""
        path, _hash, anchor = ref.partition("#")
        cslug, _slash, lslug = path.strip("/").partition("/")
        anchors = self._load().get((cslug, lslug))
        if anchors is None:
            return _("lesson: 找不到课程 %(path)r（写成 课程/课时#小节，如 "
                     "township-congress-basics/sessions#每年一般举行两次）", path=path)
        if anchor and anchor not in anchors:
            return _("lesson: 课时 %(path)s 没有小节 #%(anchor)s", path=path, anchor=anchor)
        return None


def lesson_url(ref: str) -> str:
    """``course/lesson#anchor`` → the lesson URL with its section anchor."""
    if not ref:
        return ""
    from urllib.parse import quote

    path, _, anchor = ref.partition("#")
    cslug, _, lslug = path.strip("/").partition("/")
    url = f"/courses/{quote(cslug)}/{quote(lslug)}"
    return url + (f"#{quote(anchor)}" if anchor else "")


def normalize_options(raw) -> tuple[list[dict] | None, str | None]:
    """Options as a list (keys A..F in order) or a mapping A..F → text."""
    if isinstance(raw, list):
        if len(raw) > len(OPTION_KEYS):
            return None, _("选项最多 %(n)s 个", n=len(OPTION_KEYS))
        return [{"key": OPTION_KEYS[i], "text": str(t).strip()} for i, t in enumerate(raw)], None
    if isinstance(raw, dict):
        out = []
        for k, t in raw.items():
            key = str(k).strip().upper()
            if len(key) != 1 or key not in OPTION_KEYS:
                return None, _("选项键 %(key)r 不对：只能用 A–F", key=k)
            out.append({"key": key, "text": str(t).strip()})
        out.sort(key=lambda o: o["key"])
        return out, None
    return None, _("options 应是列表或 A–F 映射")


def build_question(raw: dict, *, require_source=True, lesson_refs: LessonRefs | None = None
                   ) -> tuple[dict | None, list[tuple[str, str]]]:
    """Validate one question given as plain values; return (data, [(field, message)])."""
    errors: list[tuple[str, str]] = []
    qtype = str(raw.get("type") or "").strip().lower()
    if qtype not in TYPES:
        errors.append(("type", _("题型 %(type)r 不对：应为 single | multiple | truefalse | fill",
                                 type=raw.get("type"))))
        return None, errors
    stem = str(raw.get("stem") or "").strip()
    if not stem:
        errors.append(("stem", _("缺少题干（stem）")))
    options: list[dict] = []
    answer: list = []
    raw_answer = raw.get("answer")
    if qtype in ("single", "multiple"):
        options, msg = normalize_options(raw.get("options"))
        if msg:
            errors.append(("options", msg))
            options = []
        elif len(options) < 2:
            errors.append(("options", _("选择题至少要有两个选项")))
        elif any(not o["text"] for o in options):
            errors.append(("options", _("有空选项")))
        keys = option_keys(raw_answer)
        valid = {o["key"] for o in options}
        if not keys:
            errors.append(("answer", _("缺少答案（answer）")))
        elif options and set(keys) - valid:
            errors.append(("answer", _("答案 %(answer)s 不在选项 %(options)s 之中", answer="".join(keys),
                                       options="".join(sorted(valid)))))
        elif qtype == "single" and len(keys) != 1:
            errors.append(("answer", _("单选题只能有一个答案，写的是 %(answer)s", answer="".join(keys))))
        answer = keys
    elif qtype == "truefalse":
        value = parse_bool(raw_answer) if raw_answer is not None else None
        if value is None:
            errors.append(("answer", _("判断题答案应为 对/错（true/false），写的是 %(answer)r", answer=raw_answer)))
        answer = [value]
    else:
        values = raw_answer if isinstance(raw_answer, list) else [raw_answer]
        answer = [str(v).strip() for v in values if v is not None and str(v).strip()]
        if not answer:
            errors.append(("answer", _("填空题缺少答案（answer）")))
    explanation = str(raw.get("explanation") or "").strip()
    if not explanation:
        errors.append(("explanation", _("缺少解析（explanation）")))
    source = str(raw.get("source") or "").strip()
    lesson = str(raw.get("lesson") or "").strip()
    if require_source and not source and not lesson:
        errors.append(("source", _("缺少出处：写 source（法律和条款）或 lesson（课程/课时#小节）")))
    if lesson and lesson_refs is not None:
        msg = lesson_refs.check(lesson)
        if msg:
            errors.append(("lesson", msg))
    for field, limit in (("source", MAX_REF), ("lesson", MAX_REF)):
        value = source if field == "source" else lesson
        if len(value) > limit:
            errors.append((field, _("%(field)s 过长（最多 %(n)s 个字）", field=field, n=limit)))
    texts = [("stem", stem), ("explanation", explanation), ("source", source), ("lesson", lesson),
             *[("options", o["text"]) for o in options],
             *[("answer", a) for a in answer if isinstance(a, str)]]
    for field, text in texts:
        code = bad_char(text)
        if code:
            errors.append((field, _("%(field)s 含有控制字符 %(code)s，请删除", field=field, code=code)))
            break
    partial = raw.get("partial_credit", False)
    if not isinstance(partial, bool):
        errors.append(("partial_credit", _("partial_credit 应为 true 或 false")))
        partial = False
    if errors:
        return None, errors
    return {"type": qtype, "stem": stem, "options": options, "answer": answer,
            "explanation": explanation, "source": source, "lesson": lesson,
            "partial_credit": bool(partial) and qtype == "multiple"}, []


# -- one file -----------------------------------------------------------------------------------

def parse_quiz(text: str, lesson_refs: LessonRefs | None = None
               ) -> tuple[dict | None, list[tuple[int, str]]]:
    """Parse a quiz file; return (quiz data, [(line, message)]). Data is None on any error."""
    try:
        root = load_nodes(text)
    except QuizFileError as exc:
        return None, [(exc.line, str(exc))]
    if not isinstance(root.value, dict):
        return None, [(root.line, _("测验文件应是一个映射（title: …, questions: …）"))]
    top = root.value
    errors: list[tuple[int, str]] = []

    def line(key, default=None):
        return top[key].line if key in top else (default or root.line)

    def val(key, default=None):
        return top[key].plain() if key in top else default

    for key in top:
        if key not in QUIZ_KEYS:
            errors.append((line(key), _("未知字段 %(key)r", key=key)))
    title = str(val("title") or "").strip()
    if not title:
        errors.append((root.line, _("缺少标题（title）")))
    elif len(title) > MAX_TITLE:
        errors.append((line("title"), _("标题过长（最多 %(n)s 个字）", n=MAX_TITLE)))
    elif bad_char(title):
        errors.append((line("title"), _("%(field)s 含有控制字符 %(code)s，请删除", field="title",
                                        code=bad_char(title))))
    course = val("course")
    if course is not None:
        course = str(course).strip()
        if len(course) > MAX_COURSE:
            errors.append((line("course"), _("课程地址过长（最多 %(n)s 个字）", n=MAX_COURSE)))
        elif lesson_refs is not None and course not in lesson_refs.courses():
            errors.append((line("course"), _("找不到课程 %(course)r", course=course)))

    def int_field(key, lo, hi, default):
        v = val(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            errors.append((line(key), _("%(key)s 应是 %(lo)s–%(hi)s 之间的整数，写的是 %(value)r",
                                        key=key, lo=lo, hi=hi, value=v)))
            return default
        return v

    def bool_field(key, default):
        v = val(key, default)
        if not isinstance(v, bool):
            errors.append((line(key), _("%(key)s 应为 true 或 false，写的是 %(value)r", key=key, value=v)))
            return default
        return v

    pass_score = int_field("pass_score", 0, 100, 60)
    time_limit = int_field("time_limit_minutes", 1, 600, None)
    attempts = int_field("attempts", 1, 100, None)
    draw = int_field("draw", 1, 1000, None)
    grading = str(val("grading", "best"))
    if grading not in ("best", "last"):
        errors.append((line("grading"), _("grading 应为 best 或 last，写的是 %(value)r", value=grading)))
    show_after = str(val("show_after", "answers"))
    if show_after not in SHOW_AFTER:
        errors.append((line("show_after"), _("show_after 应为 answers 或 score，写的是 %(value)r",
                                             value=show_after)))
    shuffle = bool_field("shuffle_options", False)
    one_per_screen = bool_field("one_per_screen", True)

    questions = []
    qnode = top.get("questions")
    if qnode is None or not isinstance(qnode.value, list) or not qnode.value:
        errors.append((line("questions"), _("缺少题目（questions 应是非空列表）")))
    else:
        seen: dict[str, int] = {}
        for item in qnode.value:
            if not isinstance(item.value, dict):
                errors.append((item.line, _("每道题应是一个映射（id: …, type: …）")))
                continue
            fields = item.value
            for key in fields:
                if key not in QUESTION_KEYS:
                    errors.append((fields[key].line, _("未知字段 %(key)r", key=key)))
            qid = str(fields["id"].plain()).strip() if "id" in fields else ""
            if not qid:
                errors.append((item.line, _("缺少题目编号（id）：编号要稳定，改题不改编号")))
            elif not QID_RE.match(qid):
                errors.append((fields["id"].line, _("题目编号 %(qid)r 只能用字母、数字、-、_、.", qid=qid)))
            elif qid in seen:
                errors.append((fields["id"].line, _("题目编号 %(qid)r 重复（第 %(line)s 行已用）",
                                                    qid=qid, line=seen[qid])))
            else:
                seen[qid] = fields["id"].line
            data, problems = build_question({k: n.plain() for k, n in fields.items()},
                                            lesson_refs=lesson_refs)
            for field, msg in problems:
                errors.append((fields[field].line if field in fields else item.line, msg))
            if data:
                data["qid"] = qid
                questions.append(data)
        if draw and questions and draw > len(qnode.value):
            errors.append((line("draw"), _("draw=%(draw)s 大于题目数 %(n)s", draw=draw, n=len(qnode.value))))
    if errors:
        return None, sorted(errors)
    return {"title": title, "course": course, "pass_score": pass_score,
            "time_limit_minutes": time_limit, "attempts": attempts, "grading": grading,
            "draw": draw, "shuffle_options": shuffle, "show_after": show_after,
            "one_per_screen": one_per_screen, "questions": questions}, []


# -- storing ------------------------------------------------------------------------------------

QUIZ_FIELDS = {"title": "title", "course": "course_slug", "pass_score": "pass_score",
               "time_limit_minutes": "time_limit_minutes", "attempts": "attempts_allowed",
               "grading": "grading", "draw": "draw", "shuffle_options": "shuffle_options",
               "show_after": "show_after", "one_per_screen": "one_per_screen"}
QUESTION_FIELDS = ("type", "stem", "options", "answer", "explanation", "source", "lesson",
                   "partial_credit")


def store_questions(quiz: Quiz, questions: list[dict], *, retire_missing: bool) -> dict:
    """Upsert questions by stable qid; retire (never delete) those no longer listed."""
    existing = {q.qid: q for q in quiz.questions}
    counts = {"added": 0, "updated": 0, "retired": 0}
    listed = set()
    base = 0 if retire_missing else max((q.position for q in quiz.questions), default=-1) + 1
    for i, data in enumerate(questions):
        listed.add(data["qid"])
        q = existing.get(data["qid"])
        if q is None:
            q = Question(quiz=quiz, qid=data["qid"])
            db.session.add(q)
            counts["added"] += 1
            q.position = base + i
        else:
            changed = q.retired or any(getattr(q, f) != data[f] for f in QUESTION_FIELDS)
            counts["updated"] += int(changed)
            if retire_missing:
                q.position = i
        for f in QUESTION_FIELDS:
            setattr(q, f, data[f])
        q.retired = False
    if retire_missing:
        for qid, q in existing.items():
            if qid not in listed and not q.retired:
                q.retired = True
                counts["retired"] += 1
    return counts


def sync_quizzes(settings, report) -> None:
    """Load every ``*.yaml`` in the quizzes folder; unchanged files are skipped by content hash."""
    folder = Path(settings.quizzes_dir)
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")) if folder.is_dir() else []
    quizzes = {q.slug: q for q in db.session.scalars(select(Quiz).where(Quiz.origin == "file"))}
    refs = LessonRefs()
    seen: set[str] = set()
    for path in files:
        slug = path.stem
        try:
            rel = path.relative_to(folder.parent)
        except ValueError:
            rel = path
        if not SLUG_RE.match(slug):
            report.problem(rel, 1, _("文件名 %(name)r 不能作为测验地址：只用小写字母、数字和 -", name=path.name))
            continue
        seen.add(slug)
        try:
            data = path.read_bytes()
            text = decode(data)
        except (OSError, QuizFileError) as exc:
            report.problem(rel, getattr(exc, "line", 1), str(exc))
            continue
        digest = hashlib.sha256(data).hexdigest()
        quiz = quizzes.get(slug)
        if (quiz is not None and quiz.content_hash == digest and quiz.is_active
                and not settings.rebuild):
            report.count("unchanged", "quiz")
            continue
        parsed, problems = parse_quiz(text, refs)
        for line, msg in problems:
            report.problem(rel, line, msg)
        if parsed is None:
            continue
        try:
            with db.session.begin_nested():
                if quiz is None:
                    other = db.session.scalar(select(Quiz).where(Quiz.slug == slug))
                    if other is not None:  # an imported bank already has this slug
                        report.problem(rel, 1, _("测验地址 %(slug)r 已被导入的题库占用", slug=slug))
                        continue
                    quiz = Quiz(slug=slug, origin="file")
                    db.session.add(quiz)
                    report.count("added", "quiz")
                else:
                    report.count("updated", "quiz")
                for key, attr in QUIZ_FIELDS.items():
                    setattr(quiz, attr, parsed[key])
                quiz.source_path, quiz.content_hash = str(rel), digest
                quiz.is_active, quiz.synced_at = True, utcnow()
                db.session.flush()
                store_questions(quiz, parsed["questions"], retire_missing=True)
                db.session.flush()
        except Exception as exc:  # one broken file never stops the others
            report.problem(rel, 1, _("保存失败：%(error)s", error=exc))
    for slug, quiz in quizzes.items():
        if slug not in seen and quiz.is_active:
            quiz.is_active = False
            report.count("removed", "quiz")
    db.session.commit()
