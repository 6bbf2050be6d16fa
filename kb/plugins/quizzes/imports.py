"""Question imports: the Excel/CSV template, Moodle GIFT and Moodle XML; export to Excel.

Every parser returns an :class:`ImportResult`: the valid questions, the questions skipped (a
type we do not take, with where and why) and the errors (file, row/line and what is wrong).
A file with errors imports nothing unless the person chooses to import the valid rows.
Imported questions go into a *bank*: a DB-defined quiz (``Quiz.origin == "import"``) owned by
the importer's county and visible to that county's people only.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from sqlalchemy import select

from kb import db
from kb.content.files import DecodeError, decode_bytes
from kb.exports import unneutralize as _unneutralize
from kb.i18n import join_list
from kb.models import utcnow

from .content import BAD_CHARS, build_question, store_questions
from .grading import OPTION_KEYS, TYPE_LABELS
from .models import Quiz

MAX_BYTES = 5 * 1024 * 1024
# The template's columns: (field, header). The headers are written in the reader's language
# (template_headers()); a file may use the Chinese or the English ones (_HEADER_NAMES).
TEMPLATE_COLUMNS = [("type", _l("题型")), ("stem", _l("题干")),
                    *[(f"option{k}", _l("选项%(k)s", k=k)) for k in OPTION_KEYS],
                    ("answer", _l("答案")), ("explanation", _l("解析")), ("source", _l("出处"))]
TEMPLATE_HEADERS = ["题型", "题干", *[f"选项{k}" for k in OPTION_KEYS], "答案", "解析", "出处"]


def _header_key(text: str) -> str:
    return re.sub(r"\s+", "", str(text)).casefold()


_HEADER_NAMES = {
    **{_header_key(h): f for (f, _label), h in zip(TEMPLATE_COLUMNS, TEMPLATE_HEADERS, strict=True)},
    "type": "type", "questiontype": "type", "question": "stem", "stem": "stem",
    **{f"option{k}".casefold(): f"option{k}" for k in OPTION_KEYS},
    "answer": "answer", "correctanswer": "answer", "explanation": "explanation",
    "feedback": "explanation", "source": "source", "reference": "source",
}
_TYPE_NAMES = {"单选": "single", "单选题": "single", "单项选择": "single", "单项选择题": "single",
               "single": "single", "多选": "multiple", "多选题": "multiple",
               "多项选择": "multiple", "多项选择题": "multiple", "multiple": "multiple",
               "判断": "truefalse", "判断题": "truefalse", "truefalse": "truefalse",
               "填空": "fill", "填空题": "fill", "fill": "fill",
               # The English labels an English export writes (grading.TYPE_LABELS), and friends.
               "singlechoice": "single", "multiplechoice": "multiple", "true/false": "truefalse",
               "trueorfalse": "truefalse", "fillintheblank": "fill", "fill-in-the-blank": "fill",
               "fillin": "fill"}
# Stored with an imported question that has no explanation: a fixed text shown as it is.
NO_EXPLANATION = "（原题库未提供解析）"


@dataclass
class ImportResult:
    fmt: str = ""
    questions: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"where", "reason"}
    errors: list[dict] = field(default_factory=list)  # {"where", "message"}
    warnings: list[dict] = field(default_factory=list)

    def by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for q in self.questions:
            out[q["type"]] = out.get(q["type"], 0) + 1
        return out

    def summary(self, imported: int) -> dict:
        return {"imported": imported, "by_type": self.by_type(), "skipped": self.skipped,
                "errors": self.errors}

    def to_payload(self) -> dict:
        return {"fmt": self.fmt, "questions": self.questions, "skipped": self.skipped,
                "errors": self.errors, "warnings": self.warnings}

    @classmethod
    def from_payload(cls, d: dict) -> ImportResult:
        return cls(d.get("fmt", ""), d.get("questions", []), d.get("skipped", []),
                   d.get("errors", []), d.get("warnings", []))


def stable_qid(qtype: str, stem: str) -> str:
    """Imported questions get an id from their content, so importing a file again updates."""
    return "imp-" + hashlib.sha1(f"{qtype}\n{stem}".encode()).hexdigest()[:12]


def _add(result: ImportResult, raw: dict, where: str, *, require_explanation=True) -> None:
    if not require_explanation and not str(raw.get("explanation") or "").strip():
        raw["explanation"] = NO_EXPLANATION
        result.warnings.append({"where": where, "message": _("没有解析，已写入“原题库未提供解析”")})
    data, problems = build_question(raw, require_source=False)
    if problems:
        for _field, msg in problems:
            result.errors.append({"where": where, "message": msg})
        return
    data["qid"] = stable_qid(data["type"], data["stem"])
    if any(q["qid"] == data["qid"] for q in result.questions):
        result.skipped.append({"where": where, "reason": _("与前面的题目重复")})
        return
    data["where"] = where
    result.questions.append(data)


def detect_format(filename: str, data: bytes) -> str:
    ext = PurePath(filename or "").suffix.lower()
    head = data[:512].lstrip(b"\xef\xbb\xbf").lstrip()
    if ext == ".xml" or head.startswith(b"<?xml") or head.startswith(b"<quiz"):
        return "xml"
    if ext in (".gift", ".txt"):
        return "gift"
    return "table"


def parse_file(filename: str, data: bytes) -> ImportResult:
    if not data:
        return ImportResult(errors=[{"where": filename, "message": _("文件是空的")}])
    if len(data) > MAX_BYTES:
        return ImportResult(errors=[{"where": filename, "message": _("文件过大（上限 5 MB）")}])
    fmt = detect_format(filename, data)
    result = {"xml": parse_moodle_xml, "gift": parse_gift, "table": parse_table}[fmt](filename, data)
    result.fmt = fmt
    return result


def _decode(filename: str, data: bytes, result: ImportResult) -> str | None:
    try:
        return decode_bytes(data).text
    except (DecodeError, UnicodeDecodeError):
        result.errors.append({"where": filename, "message": _("文件不是 UTF-8 或 GBK 文本")})
        return None


# -- Excel / CSV ------------------------------------------------------------------------------

def _table_rows(filename: str, data: bytes, result: ImportResult):
    if data.startswith(b"PK\x03\x04"):
        import openpyxl

        try:
            wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception:
            result.errors.append({"where": filename, "message": _("文件不能作为 Excel 工作簿（.xlsx）打开")})
            return []
        try:
            ws = wb.worksheets[0] if wb.worksheets else None
            if ws is None:
                result.errors.append({"where": filename, "message": _("工作簿中没有工作表")})
                return []
            return [[_unneutralize("" if c is None else str(c)) for c in row]
                    for row in ws.iter_rows(values_only=True)]
        except Exception:  # a damaged sheet inside a readable zip
            result.errors.append({"where": filename, "message": _("文件不能作为 Excel 工作簿（.xlsx）打开")})
            return []
        finally:
            wb.close()
    text = _decode(filename, data, result)
    if text is None:
        return []
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    try:
        return [[_unneutralize(c) for c in row]
                for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)]
    except csv.Error as exc:
        result.errors.append({"where": filename, "message": _("CSV 格式错误：%(error)s", error=exc)})
        return []


def _nothing_found(result: ImportResult, filename: str) -> None:
    if not result.questions and not result.skipped and not result.errors:
        result.errors.append({"where": filename, "message": _("文件中没有找到题目")})


def parse_table(filename: str, data: bytes) -> ImportResult:
    """The template: 题型, 题干, 选项A…选项F, 答案, 解析, 出处 or the English headers an English
    export writes (Type, Question, Option A…, Answer, Explanation, Source); row numbers as in Excel."""
    result = ImportResult()
    rows = _table_rows(filename, data, result)
    header_at, columns = None, {}
    for i, row in enumerate(rows[:10]):
        fields = [_HEADER_NAMES.get(_header_key(c)) for c in row]
        if "stem" in fields and "answer" in fields:
            header_at = i
            columns = {}
            for j, f in enumerate(fields):
                if f is not None:
                    columns.setdefault(f, j)
            break
    if header_at is None:
        if not result.errors:
            result.errors.append({"where": filename, "message": _("找不到表头：第一行应为 %(headers)s",
                                                                  headers=join_list(template_headers()))})
        return result

    def cell(row, name):
        j = columns.get(name)
        return row[j].strip() if j is not None and j < len(row) and row[j] is not None else ""

    for i, row in enumerate(rows[header_at + 1:], start=header_at + 2):
        if not any(str(c).strip() for c in row):
            continue
        where = pgettext("spreadsheet row", "第 %(n)s 行", n=i)
        kind = cell(row, "type")
        qtype = _TYPE_NAMES.get(kind.lower().replace(" ", ""))
        if qtype is None:
            result.errors.append({"where": where, "message": _("题型 %(type)r 不对：应为 %(types)s",
                                                               type=kind, types=_type_choices())})
            continue
        options = [(k, cell(row, f"option{k}")) for k in OPTION_KEYS]
        answer = cell(row, "answer")
        raw = {"type": qtype, "stem": cell(row, "stem"), "explanation": cell(row, "explanation"),
               "source": cell(row, "source"), "answer": answer or None}
        if qtype in ("single", "multiple"):
            raw["options"] = {k: t for k, t in options if t}
        elif qtype == "fill" and answer:
            raw["answer"] = [a for a in re.split(r"[|｜;；]", answer) if a.strip()]
        _add(result, raw, where)
    _nothing_found(result, filename)
    return result


def template_headers() -> list[str]:
    """The template's header row in the reader's language."""
    return [str(label) for _f, label in TEMPLATE_COLUMNS]


def _type_choices() -> str:
    """单选、多选、判断 或 填空 (the type labels in the reader's language)."""
    labels = [str(TYPE_LABELS[t]) for t in ("single", "multiple", "truefalse", "fill")]
    return _("%(first)s 或 %(last)s", first=join_list(labels[:-1]), last=labels[-1])


def template_xlsx() -> bytes:
    """The import template: headers and type labels in the reader's language; the example
    questions are sample content (Chinese, like the real banks)."""
    from openpyxl import Workbook

    single, multiple, truefalse, fill = (str(TYPE_LABELS[t]) for t in ("single", "multiple", "truefalse", "fill"))
    wb = Workbook()
    ws = wb.active
    ws.title = _("题库")
    ws.append(template_headers())
    ws.append([single, "乡镇人民代表大会每届任期几年？", "三年", "四年", "五年", "", "", "", "C",
               "宪法规定地方各级人民代表大会每届任期五年。", "宪法 第九十八条"])
    ws.append([multiple, "代表在闭会期间可以开展哪些活动？", "视察", "专题调研", "直接处理问题", "", "", "",
               "AB", "代表可以视察、调研，但不直接处理问题。", "代表法(2025) 第二十九条、第三十条"])
    ws.append([truefalse, "乡镇人大设立常务委员会。", "", "", "", "", "", "", _("错"),
               "县级以上的地方各级人大设立常务委员会，乡镇人大不设。", "宪法 第九十六条"])
    ws.append([fill, "代表建议应当自交办之日起____个月内答复。", "", "", "", "", "", "", "三|3",
               "一般三个月内答复，涉及面广的不超过六个月。", "代表法(2025) 第五十一条"])
    for col, width in zip("ABCDEFGHIJK", (8, 40, 14, 14, 14, 14, 14, 14, 8, 40, 24), strict=True):
        ws.column_dimensions[col].width = width
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def export_xlsx(quiz: Quiz) -> bytes:
    """The bank in the template's layout, headers, type labels and 对/错 in the reader's language
    (parse_table reads it back in either language)."""
    from kb.exports import xlsx_bytes

    rows = []
    for q in quiz.live_questions():
        opts = {o["key"]: o["text"] for o in q.options}
        if q.type in ("single", "multiple"):
            answer = "".join(q.answer)
        elif q.type == "truefalse":
            answer = _("对") if q.answer and q.answer[0] else _("错")
        else:
            answer = "|".join(q.answer)
        rows.append((str(TYPE_LABELS[q.type]), q.stem, *[opts.get(k, "") for k in OPTION_KEYS],
                     answer, q.explanation, q.source or q.lesson))
    return xlsx_bytes(_("题库"), template_headers(), rows)


# -- Moodle GIFT --------------------------------------------------------------------------------

_GIFT_ESC = {"\\~": "\x01", "\\=": "\x02", "\\#": "\x03", "\\{": "\x04", "\\}": "\x05",
             "\\:": "\x06", "\\n": "\n"}
_GIFT_UNESC = {"\x01": "~", "\x02": "=", "\x03": "#", "\x04": "{", "\x05": "}", "\x06": ":"}


def _unesc(text: str) -> str:
    for k, v in _GIFT_UNESC.items():
        text = text.replace(k, v)
    text = re.sub(r"^\[(html|moodle|plain|markdown)\]", "", text.strip())
    return _strip_html(text).strip()


def _gift_blocks(text: str):
    """Split into (first line number, text) per question: blank lines separate questions."""
    block, start = [], None
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        if not stripped:
            if block and _balanced("\n".join(block)):
                yield start, "\n".join(block)
                block, start = [], None
            continue
        if not block:
            start = n
        block.append(line)
    if block:
        yield start, "\n".join(block)


def _balanced(text: str) -> bool:
    t = text
    for k, v in _GIFT_ESC.items():
        t = t.replace(k, v)
    return t.count("{") == t.count("}")


def parse_gift(filename: str, data: bytes) -> ImportResult:
    result = ImportResult()
    text = _decode(filename, data, result)
    if text is None:
        return result
    for line, block in _gift_blocks(text):
        where = _("第 %(n)s 行", n=line)
        bad = BAD_CHARS.search(block)
        if bad:  # also: \x01–\x06 stand for escaped characters below
            at = line + block.count("\n", 0, bad.start())
            result.errors.append({"where": _("第 %(n)s 行", n=at), "message": _(
                "含有控制字符 %(code)s，请删除", code=f"U+{ord(bad.group()):04X}")})
            continue
        src = block
        for k, v in _GIFT_ESC.items():
            src = src.replace(k, v)
        if src.strip().startswith("$CATEGORY"):
            continue
        src = re.sub(r"^\s*::(.*?)::", "", src, count=1, flags=re.S)
        opens, closes = src.count("{"), src.count("}")
        if opens == 0:
            result.errors.append({"where": where, "message": _("GIFT 语法错误：没有答案块 {…}")})
            continue
        if opens != closes or opens > 1 or src.index("{") > src.index("}"):
            result.errors.append({"where": where, "message": _("GIFT 语法错误：花括号 { } 不配对")})
            continue
        before, rest = src.split("{", 1)
        body, after = rest.split("}", 1)
        stem = _unesc(before)
        if after.strip():
            stem = f"{stem} ____ {_unesc(after)}".strip()
        body = body.strip()
        feedback = ""
        if "####" in body:
            body, feedback = body.split("####", 1)
            feedback = _unesc(feedback)
        if body == "":
            result.skipped.append({"where": where, "reason": _("问答题（essay）不能自动评分，已跳过")})
            continue
        if re.fullmatch(r"(T|F|TRUE|FALSE)(\s*#.*)?", body, flags=re.S | re.I):
            value = body.split("#")[0].strip().upper().startswith("T")
            _add(result, {"type": "truefalse", "stem": stem, "answer": value,
                          "explanation": feedback}, where, require_explanation=False)
            continue
        if body.startswith("#"):
            answers = []
            for part in re.split(r"=", body[1:]):
                part = part.split("#")[0].strip()
                if not part or part.startswith("%") and not part.startswith("%100%"):
                    continue
                part = re.sub(r"^%\d+%", "", part)
                value = part.split(":")[0].split("..")[0].strip()
                if value:
                    answers.append(value)
            if not answers:
                result.errors.append({"where": where, "message": _("数值题没有答案")})
                continue
            if ":" in body or ".." in body:
                result.warnings.append({"where": where, "message": _("数值题的误差范围不导入，只接受准确值")})
            _add(result, {"type": "fill", "stem": stem, "answer": answers,
                          "explanation": feedback}, where, require_explanation=False)
            continue
        parts = re.findall(r"([=~])([^=~]*)", body)
        if not parts:
            result.errors.append({"where": where, "message": _("GIFT 语法错误：答案块里没有 = 或 ~ 开头的答案")})
            continue
        if any("->" in text for _mark, text in parts):
            result.skipped.append({"where": where, "reason": _("配对题（matching）不支持，已跳过")})
            continue
        choices = []
        for mark, item in parts:
            item = item.split("#")[0]
            weight = 100.0 if mark == "=" else 0.0
            m = re.match(r"\s*%(-?\d+(?:\.\d+)?)%", item)
            if m:
                weight = float(m.group(1))
                item = item[m.end():]
            choices.append((weight, _unesc(item)))
        if all(mark == "=" for mark, _text in parts):
            _add(result, {"type": "fill", "stem": stem, "answer": [c for _, c in choices],
                          "explanation": feedback}, where, require_explanation=False)
            continue
        if len(choices) > len(OPTION_KEYS):
            result.skipped.append({"where": where, "reason": _("选项超过 %(n)s 个，已跳过", n=len(OPTION_KEYS))})
            continue
        options = {OPTION_KEYS[i]: c for i, (_w, c) in enumerate(choices)}
        right = [OPTION_KEYS[i] for i, (w, _c) in enumerate(choices) if w > 0]
        qtype = "single" if len(right) == 1 and any(w == 100 for w, _c in choices) else "multiple"
        _add(result, {"type": qtype, "stem": stem, "options": options, "answer": right or None,
                      "explanation": feedback}, where, require_explanation=False)
    _nothing_found(result, filename)
    return result


# -- Moodle XML ---------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]+>")


def _strip_html(text: str) -> str:
    text = re.sub(r"<br\s*/?>|</p>", "\n", text or "", flags=re.I)
    return html.unescape(_TAG.sub("", text)).strip()


def _text(el, path: str) -> str:
    node = el.find(path)
    return _strip_html(node.text or "") if node is not None and node.text else ""


def parse_moodle_xml(filename: str, data: bytes) -> ImportResult:
    """Moodle XML, parsed with defusedxml: DTDs, entities and external references are refused."""
    import defusedxml
    from defusedxml.ElementTree import ParseError, fromstring

    result = ImportResult()
    data = _xml_as_utf8(filename, data, result)
    if data is None:
        return result
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        result.errors.append({"where": filename, "message": _("XML 含有 DTD 或实体声明，出于安全原因拒绝读取（%(kind)s）",
                                                              kind=type(exc).__name__)})
        return result
    except ParseError as exc:
        line = getattr(exc, "position", (0, 0))[0]
        result.errors.append({"where": _("第 %(n)s 行", n=line), "message": _("XML 格式错误：%(error)s", error=exc)})
        return result
    except (ValueError, LookupError) as exc:  # an encoding expat cannot read
        result.errors.append({"where": filename, "message": _(
            "XML 声明的编码无法读取（%(error)s），请另存为 UTF-8", error=exc)})
        return result
    if root.tag != "quiz":
        result.errors.append({"where": filename, "message": _("不是 Moodle XML：根元素应为 <quiz>")})
        return result
    number = 0
    for el in root.findall("question"):
        qtype = el.get("type", "")
        if qtype == "category":
            continue
        number += 1
        name = _text(el, "name/text")
        where = _("第 %(n)s 题（%(name)s）", n=number, name=name) if name else _("第 %(n)s 题", n=number)
        stem = _text(el, "questiontext/text")
        feedback = _text(el, "generalfeedback/text")
        answers, bad = [], None
        for a in el.findall("answer"):
            raw_fraction = a.get("fraction", "0") or "0"
            try:
                fraction = float(raw_fraction)
            except ValueError:
                fraction = math.nan
            if math.isnan(fraction):
                bad = raw_fraction
                break
            answers.append((fraction, _text(a, "text")))
        if bad is not None:
            result.errors.append({"where": where, "message": _(
                "答案的 fraction 应是数字（如 100、50、0），写的是 %(value)r", value=bad)})
            continue
        if qtype == "multichoice":
            single = (el.findtext("single") or "true").strip().lower() in ("true", "1")
            if len(answers) > len(OPTION_KEYS):
                result.skipped.append({"where": where, "reason": _("选项超过 %(n)s 个，已跳过", n=len(OPTION_KEYS))})
                continue
            options = {OPTION_KEYS[i]: t for i, (_f, t) in enumerate(answers)}
            right = [OPTION_KEYS[i] for i, (f, _t) in enumerate(answers) if f > 0]
            _add(result, {"type": "single" if single else "multiple", "stem": stem,
                          "options": options, "answer": right or None, "explanation": feedback,
                          "partial_credit": False}, where, require_explanation=False)
        elif qtype == "truefalse":
            right = [t for f, t in answers if f >= 100]
            _add(result, {"type": "truefalse", "stem": stem,
                          "answer": right[0] if right else None, "explanation": feedback},
                 where, require_explanation=False)
        elif qtype in ("shortanswer", "numerical"):
            right = [t for f, t in answers if f >= 100]
            _add(result, {"type": "fill", "stem": stem, "answer": right or None,
                          "explanation": feedback}, where, require_explanation=False)
        else:
            result.skipped.append({"where": where, "reason": _("题型 %(type)s 不支持，已跳过",
                                                               type=qtype or _("（未注明）"))})
    _nothing_found(result, filename)
    return result


_XML_DECL = re.compile(rb"""^(\s*<\?xml[^>]*?encoding\s*=\s*)(["'])([A-Za-z0-9._-]*)\2""")
_GB_ENCODINGS = {"gbk", "gb2312", "gb18030", "cp936", "x-gbk", "euc-cn", "hz-gb-2312"}


def _xml_as_utf8(filename: str, data: bytes, result: ImportResult) -> bytes | None:
    """Moodle exports are UTF-8; a file declared GBK/GB2312 (saved on Chinese Windows) is
    re-encoded, since expat does not read multi-byte encodings."""
    m = _XML_DECL.match(data)
    if m is None or m.group(3).decode("ascii").lower() not in _GB_ENCODINGS:
        return data
    try:
        text = data[m.end():].decode("gb18030")
    except UnicodeDecodeError:
        result.errors.append({"where": filename, "message": _(
            "文件声明为 %(encoding)s 编码，但内容不是该编码，请另存为 UTF-8", encoding=m.group(3).decode())})
        return None
    return m.group(1) + m.group(2) + b"UTF-8" + m.group(2) + text.encode("utf-8")


# -- saving into a bank -------------------------------------------------------------------------

class ImportRefused(Exception):
    pass


def commit_import(result: ImportResult, *, slug: str, title: str | None, org_unit_id: int | None,
                  valid_only: bool = False) -> int:
    """Save the valid questions into the bank ``slug``; nothing when there are errors unless
    ``valid_only``. Return the number of questions imported (added or updated)."""
    if result.errors and not valid_only:
        raise ImportRefused(_("文件有错误，没有导入任何题目（可以选择只导入正确的题目）"))
    if not result.questions:
        return 0
    try:
        return _store_import(result, slug=slug, title=title, org_unit_id=org_unit_id)
    except BaseException:
        db.session.rollback()  # all the questions or none
        raise


def _store_import(result: ImportResult, *, slug: str, title: str | None, org_unit_id: int | None) -> int:
    quiz = db.session.scalar(select(Quiz).where(Quiz.slug == slug))
    if quiz is None:
        quiz = Quiz(slug=slug, title=title or slug, origin="import", org_unit_id=org_unit_id,
                    pass_score=60, grading="best", one_per_screen=True, show_after="answers",
                    synced_at=utcnow())
        db.session.add(quiz)
        db.session.flush()
    elif quiz.origin != "import" or quiz.org_unit_id != org_unit_id:
        raise ImportRefused(_("测验 %(slug)r 不是本县导入的题库，不能往里导入", slug=slug))
    if title:
        quiz.title = title
    quiz.is_active = True
    questions = [{k: v for k, v in q.items() if k != "where"} for q in result.questions]
    store_questions(quiz, questions, retire_missing=False)
    db.session.commit()
    return len(questions)
