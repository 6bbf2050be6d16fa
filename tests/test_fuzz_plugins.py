"""Property tests for the plugins' parsers: quiz YAML, question imports (Excel/CSV, GIFT, Moodle
XML), the roster (花名册, CSV and .xlsx, also read by the attendance plugin's enrolment import).

Every parser gets random text or bytes and valid documents with mutations (wrong types, missing
fields, huge numbers, unicode, BOMs, GBK bytes, truncated XML, odd spreadsheet cells). The
properties: a parser returns a result or reports problems that say what and where, never an
unhandled exception; an export read back gives the same questions or roster; an import through
the real service either applies fully or changes nothing.

``KB_FUZZ_PROFILE=fuzz-long`` runs many more examples (the default keeps the file under a minute).
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from datetime import date, datetime
from xml.sax.saxutils import escape as xml_escape

import openpyxl
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from kb.exports import neutralize
from kb.people import roster
from kb.plugins.quizzes import content, imports
from kb.plugins.quizzes.content import QID_RE, QuizFileError, parse_quiz
from kb.plugins.quizzes.grading import OPTION_KEYS, TYPES
from kb.plugins.quizzes.imports import ImportRefused, commit_import, export_xlsx, parse_file
from kb.records import SyncReport, SyncSettings

from .conftest import make_config

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large,
             HealthCheck.filter_too_much]
settings.register_profile("fuzz", max_examples=100, deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile("fuzz-long", max_examples=2000, deadline=None,
                          suppress_health_check=_SUPPRESS)
_PROFILE = settings.get_profile(os.environ.get("KB_FUZZ_PROFILE", "fuzz"))
FUZZ = settings(_PROFILE)
# The database properties write rows: fewer examples.
FUZZ_DB = settings(_PROFILE, max_examples=max(10, _PROFILE.max_examples // 3))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """An app and a request context (the parsers' messages go through gettext)."""
    from kb import create_app

    app = create_app(make_config(tmp_path_factory.mktemp("fuzz")))
    with app.test_request_context():
        yield app


# -- shared strategies ----------------------------------------------------------------------------

CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF)
# Text a person could type: CJK, letters, digits, punctuation, emoji, full-width forms; no
# control characters. Leading formula characters (= + - @) are included on purpose.
WORDY = st.one_of(CJK, st.sampled_from(list("abcXYZ0129 　,，。？！、=+-@'\"()（）《》_.%…")),
                  st.characters(min_codepoint=0x1F600, max_codepoint=0x1F64F),
                  st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E))
PLAIN = st.text(WORDY, min_size=1, max_size=24).map(str.strip).filter(bool)
# Anything at all, control characters and lone surrogates included.
ANY_TEXT = st.text(st.characters(), max_size=40)
WEIRD = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10 ** 18),
    st.floats(allow_nan=True, allow_infinity=True), ANY_TEXT, PLAIN,
    st.lists(PLAIN, max_size=8), st.dictionaries(PLAIN, PLAIN, max_size=8),
    st.dates(), st.sampled_from(["", " ", "0", "-1", "1e400", "9" * 5000, "\ufeff", "\x00",
                                 "2020-13-45", "对", "错", "ABCDEFG", "Z", "\u202e"]))


def encodings(text: str) -> list[bytes]:
    """UTF-8, UTF-8 with BOM and (when it can be) GBK."""
    out = [text.encode("utf-8", "surrogatepass"), b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")]
    try:
        out.append(text.encode("gbk"))
    except UnicodeEncodeError:
        pass
    return out


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few byte-level edits: truncation, insertion, deletion, duplication."""
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["truncate", "insert", "delete", "dup", "flip"]))
        if kind == "truncate":
            data = data[:at]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(max_size=8) | st.sampled_from(
                [b"\x00", b"\xef\xbb\xbf", "乡镇".encode("gbk"), b"{", b"}", b"<", b"\n\n", b'"']))
            data += data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 16)):]
        elif kind == "dup":
            data = data[:at] + data[at:at + 32] + data[at:]
        elif at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return data


def has_bad_chars(text: str) -> bool:
    """Characters that cannot be stored (NUL in PostgreSQL, lone surrogates anywhere)."""
    return any(ord(ch) < 32 and ch not in "\t\n\r" or 0xD800 <= ord(ch) <= 0xDFFF or ch == "\x7f"
               for ch in text)


def check_question(q: dict) -> None:
    """A parsed question is something the quiz pages can show and grade."""
    assert q["type"] in TYPES
    assert q["stem"] and q["stem"] == q["stem"].strip()
    assert q["explanation"]
    texts = [q["stem"], q["explanation"], q["source"], q["lesson"],
             *[o["text"] for o in q["options"]], *[a for a in q["answer"] if isinstance(a, str)]]
    assert not any(has_bad_chars(t) for t in texts), q
    assert len(q["source"]) <= 300 and len(q["lesson"]) <= 300
    keys = [o["key"] for o in q["options"]]
    if q["type"] in ("single", "multiple"):
        assert 2 <= len(keys) <= 6 and keys == sorted(set(keys)) and set(keys) <= set(OPTION_KEYS)
        assert q["answer"] and set(q["answer"]) <= set(keys)
        assert q["type"] == "multiple" or len(q["answer"]) == 1
    elif q["type"] == "truefalse":
        assert q["answer"] in ([True], [False])
    else:
        assert q["answer"] and all(isinstance(a, str) and a.strip() for a in q["answer"])


# -- quiz YAML ------------------------------------------------------------------------------------

@st.composite
def quiz_question(draw, qid: str) -> dict:
    qtype = draw(st.sampled_from(TYPES))
    q = {"id": qid, "type": qtype, "stem": draw(PLAIN), "explanation": draw(PLAIN),
         "source": draw(PLAIN)}
    if qtype in ("single", "multiple"):
        n = draw(st.integers(2, 6))
        opts = draw(st.lists(PLAIN, min_size=n, max_size=n))
        q["options"] = opts if draw(st.booleans()) else dict(zip(OPTION_KEYS, opts, strict=False))
        right = draw(st.lists(st.sampled_from(OPTION_KEYS[:n]), min_size=1, max_size=1 if qtype == "single" else n,
                              unique=True))
        q["answer"] = right if qtype == "multiple" or draw(st.booleans()) else right[0]
        if qtype == "multiple" and draw(st.booleans()):
            q["partial_credit"] = draw(st.booleans())
    elif qtype == "truefalse":
        q["answer"] = draw(st.sampled_from([True, False, "对", "错", "正确", "错误"]))
    else:
        q["answer"] = draw(st.lists(PLAIN, min_size=1, max_size=3))
    return q


@st.composite
def quiz_document(draw) -> dict:
    n = draw(st.integers(1, 5))
    qids = draw(st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), min_size=n,
                         max_size=n, unique=True))
    doc = {"title": draw(PLAIN), "pass_score": draw(st.integers(0, 100)),
           "questions": [draw(quiz_question(qid)) for qid in qids]}
    for key, value in (("time_limit_minutes", st.integers(1, 600)), ("attempts", st.integers(1, 100)),
                       ("grading", st.sampled_from(["best", "last"])),
                       ("shuffle_options", st.booleans()), ("one_per_screen", st.booleans()),
                       ("show_after", st.sampled_from(["answers", "score"])),
                       ("draw", st.integers(1, n))):
        if draw(st.booleans()):
            doc[key] = draw(value)
    return doc


def quiz_yaml(doc) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# Raw YAML lines that have broken the loader: cycles, deep nesting, bad dates, huge numbers.
NASTY_YAML = [
    "a: &x [*x]\n", "a: &x {b: *x}\n", "[" * 3000, "{a: " * 2000, "title: 2020-13-45\n",
    "title: " + "9" * 5000 + "\n", "pass_score: " + "9" * 5000 + "\n", "title: a\x00b\n",
    'title: "\\ud800"\n', "title: !!python/object:os.system x\n", "? [a, b]\n: c\n",
    "2020-02-31: x\n", "title: !!binary 'AAAA'\n", "title: !!timestamp '2020-99-99'\n",
    "&a [" + "*a, " * 10 + "]\n", "\ufeff\ufefftitle: x\n", "title: x\r\n\x85questions: []\n",
]


@st.composite
def mutated_quiz_yaml(draw) -> str:
    doc = draw(quiz_document())
    kind = draw(st.sampled_from(["drop", "retype", "raw", "truncate", "extra"]))
    if kind == "drop":
        if draw(st.booleans()):
            doc.pop(draw(st.sampled_from(sorted(doc))))
        else:
            q = draw(st.sampled_from(doc["questions"]))
            q.pop(draw(st.sampled_from(sorted(q))))
    elif kind == "retype":
        target = doc if draw(st.booleans()) else draw(st.sampled_from(doc["questions"]))
        target[draw(st.sampled_from(sorted(target)))] = draw(WEIRD)
    elif kind == "extra":
        target = doc if draw(st.booleans()) else draw(st.sampled_from(doc["questions"]))
        target[draw(PLAIN)] = draw(WEIRD)
    text = quiz_yaml(doc)
    if kind == "raw":
        lines = text.splitlines(keepends=True)
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(NASTY_YAML)))
        text = "".join(lines)
    elif kind == "truncate":
        text = text[:draw(st.integers(0, len(text)))]
    return text


def check_quiz_result(text: str, data, errors) -> None:
    assert (data is None) == bool(errors)
    lines = text.count("\n") + 2
    for line, message in errors:
        assert isinstance(line, int) and 1 <= line <= lines, (line, message)
        assert isinstance(message, str) and message.strip()
        assert not has_bad_chars(message)
    if data is not None:
        assert data["questions"] and data["title"] and len(data["title"]) <= 200
        for q in data["questions"]:
            assert QID_RE.match(q["qid"])
            check_question(q)


@FUZZ
@given(st.one_of(mutated_quiz_yaml(), st.text(max_size=300), st.sampled_from(NASTY_YAML)))
@example("a: &x [*x]\n")  # an alias to itself looped for ever (RecursionError)
@example("[" * 3000)  # deep nesting (RecursionError)
@example("title: 2020-13-45\n")  # an impossible date (ValueError from PyYAML)
@example("title: " + "9" * 5000 + "\n")  # more digits than int() takes (ValueError)
@example("title: a\x00b\n")  # a character YAML refuses (ReaderError raised outside the try)
@example('title: "\\ud800"\nquestions: []\n')  # a lone surrogate cannot be stored
def test_quiz_yaml_never_raises_and_names_the_line(ctx, text):
    data, errors = parse_quiz(text)
    check_quiz_result(text, data, errors)


@FUZZ
@given(st.binary(max_size=300) | mutated_quiz_yaml().flatmap(lambda t: st.sampled_from(encodings(t))))
def test_quiz_file_bytes_decode_or_a_clear_error(ctx, raw):
    try:
        text = content.decode(raw)
    except QuizFileError as exc:
        assert exc.line == 1 and str(exc)
        return
    data, errors = parse_quiz(text)
    check_quiz_result(text, data, errors)


@FUZZ
@given(quiz_document())
def test_valid_quiz_yaml_parses_to_the_same_questions(ctx, doc):
    text = quiz_yaml(doc)
    data, errors = parse_quiz(text)
    assert errors == [] and data is not None
    assert data["title"] == doc["title"]
    assert [q["qid"] for q in data["questions"]] == [q["id"] for q in doc["questions"]]
    for want, got in zip(doc["questions"], data["questions"], strict=True):
        assert got["type"] == want["type"] and got["stem"] == want["stem"]
        if want["type"] in ("single", "multiple"):
            opts = want["options"]
            texts = opts if isinstance(opts, list) else list(opts.values())
            assert [o["text"] for o in got["options"]] == texts


def test_long_title_course_and_source_are_line_errors(ctx):
    text = quiz_yaml({"title": "题" * 201, "course": "c" * 101, "questions": [
        {"id": "q1", "type": "fill", "stem": "题干", "answer": "答", "explanation": "解析",
         "source": "法" * 301}]})
    data, errors = parse_quiz(text)
    assert data is None
    lines = {line for line, _msg in errors}
    assert len(errors) == 3 and lines == {1, 2, 9}, errors


@FUZZ_DB
@given(doc_text=st.one_of(mutated_quiz_yaml(), quiz_document().map(quiz_yaml)))
def test_quiz_sync_applies_a_file_fully_or_not_at_all(app, doc_text):
    """``kb sync`` of one quiz file: the quiz and all its questions, or nothing and a problem."""
    from pathlib import Path

    from kb.extensions import db
    from kb.plugins.quizzes.models import Question, Quiz

    folder = Path(app.config["QUIZZES_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    raw = doc_text.encode("utf-8", "surrogatepass")
    (folder / "fuzz.yaml").write_bytes(raw)
    with app.app_context(), app.test_request_context():
        db.session.query(Question).delete()
        db.session.query(Quiz).delete()
        db.session.commit()
        report = SyncReport()
        content.sync_quizzes(SyncSettings(courses_dir=folder, quizzes_dir=folder), report)
        try:
            parsed, _problems = parse_quiz(content.decode(raw), content.LessonRefs())
        except QuizFileError:
            parsed = None
        quiz = db.session.scalar(select(Quiz))
        if parsed is None:
            assert quiz is None and report.errors
            assert all(p.path.endswith("fuzz.yaml") and p.line >= 1 for p in report.errors)
        else:
            assert not report.errors, report.errors
            stored = db.session.scalars(select(Question).order_by(Question.position)).all()
            assert [q.qid for q in stored] == [q["qid"] for q in parsed["questions"]]
        db.session.remove()


# -- question imports: the Excel/CSV template -----------------------------------------------------

@st.composite
def import_question(draw, separators=True) -> dict:
    """A question as the import template holds it (plain values, no qid)."""
    qtype = draw(st.sampled_from(TYPES))
    text = PLAIN if separators else PLAIN.filter(lambda t: not re.search(r"[|｜;；]", t))
    q = {"type": qtype, "stem": draw(PLAIN), "explanation": draw(PLAIN), "source": draw(PLAIN),
         "options": [], "lesson": "", "partial_credit": False}
    if qtype in ("single", "multiple"):
        n = draw(st.integers(2, 6))
        q["options"] = [{"key": k, "text": t} for k, t in
                        zip(OPTION_KEYS, draw(st.lists(PLAIN, min_size=n, max_size=n)), strict=False)]
        q["answer"] = sorted(draw(st.lists(st.sampled_from(OPTION_KEYS[:n]), min_size=1,
                                           max_size=1 if qtype == "single" else n, unique=True)))
    elif qtype == "truefalse":
        q["answer"] = [draw(st.booleans())]
    else:
        q["answer"] = draw(st.lists(text, min_size=1, max_size=3, unique=True))
    return q


def _distinct(questions: list[dict]) -> list[dict]:
    seen, out = set(), []
    for q in questions:
        if (q["type"], q["stem"]) not in seen:
            seen.add((q["type"], q["stem"]))
            out.append(q)
    return out


def table_row(q: dict) -> list[str]:
    opts = {o["key"]: o["text"] for o in q["options"]}
    if q["type"] in ("single", "multiple"):
        answer = "".join(q["answer"])
    elif q["type"] == "truefalse":
        answer = "对" if q["answer"][0] else "错"
    else:
        answer = "|".join(q["answer"])
    label = {"single": "单选", "multiple": "多选", "truefalse": "判断", "fill": "填空"}[q["type"]]
    return [label, q["stem"], *[opts.get(k, "") for k in OPTION_KEYS], answer, q["explanation"],
            q["source"]]


ODD_CELLS = st.one_of(st.integers(-10 ** 15, 10 ** 15), st.floats(allow_nan=False, allow_infinity=False),
                      st.booleans(), st.datetimes(min_value=datetime(1900, 3, 1)),
                      st.dates(min_value=date(1900, 3, 1)),
                      st.sampled_from(["=1+1", "=A1&B1", "=SUM(A1:A3)", "=1/0", "#N/A", "'=1", " "]),
                      PLAIN, st.text(max_size=40).map(lambda t: re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "", t)))


@st.composite
def odd_xlsx(draw, rows: list[list]) -> bytes:
    """An .xlsx of ``rows`` with odd cells, merged ranges, formulas, extra or empty sheets."""
    wb = openpyxl.Workbook()
    ws = wb.active
    if draw(st.booleans()) and draw(st.booleans()):
        ws.title = "空"  # an empty first sheet; the data on the second
        ws = wb.create_sheet("数据")
        if draw(st.booleans()):
            wb.active = 1
    for row in rows:
        ws.append(row)
    for _ in range(draw(st.integers(0, 4))):
        r, c = draw(st.integers(1, len(rows) + 2)), draw(st.integers(1, 12))
        ws.cell(row=r, column=c, value=draw(ODD_CELLS))
    if draw(st.booleans()) and rows:
        r, c = draw(st.integers(1, len(rows) + 1)), draw(st.integers(1, 10))
        ws.merge_cells(start_row=r, start_column=c, end_row=r + draw(st.integers(0, 2)),
                       end_column=c + draw(st.integers(0, 2)))
    if draw(st.booleans()):
        wb.create_sheet("附注").append(["说明", draw(PLAIN)])
    out = io.BytesIO()
    wb.save(out)
    return stable_zip(out.getvalue())


def stable_zip(data: bytes) -> bytes:
    """The same workbook gives the same bytes (no save times), so byte mutations replay."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2020-01-01T00:00:00Z", body)
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0)), body,
                         zipfile.ZIP_DEFLATED)
    return out.getvalue()


def csv_of(rows: list[list], delimiter=",") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


@st.composite
def table_file(draw) -> tuple[str, bytes]:
    questions = draw(st.lists(import_question(), min_size=1, max_size=5))
    rows = [list(imports.TEMPLATE_HEADERS)] + [table_row(q) for q in questions]
    for _ in range(draw(st.integers(0, 2))):  # wrong types, blanks, extra cells
        row = draw(st.sampled_from(rows))
        j = draw(st.integers(0, len(row)))
        row[j:j + 1] = [draw(ODD_CELLS | st.just(""))]
    if draw(st.booleans()):
        rows.insert(0, [draw(PLAIN)])  # a title row above the header
    if draw(st.booleans()):
        return "bank.xlsx", draw(odd_xlsx(rows))
    text = csv_of([[str(c) for c in row] for row in rows], draw(st.sampled_from([",", "\t"])))
    return draw(st.sampled_from(["bank.csv", "题库.CSV", "bank", "bank.tsv"])), draw(st.sampled_from(encodings(text)))


def check_import(result: imports.ImportResult, filename: str) -> None:
    assert result.fmt in ("xml", "gift", "table") or result.errors
    for e in result.errors + result.warnings:
        assert e["where"] and isinstance(e["where"], str), e
        assert e["message"] and isinstance(e["message"], str), e
        assert e["where"] == filename or re.search(r"\d", e["where"]), e
    for s in result.skipped:
        assert s["where"] and s["reason"]
    qids = [q["qid"] for q in result.questions]
    assert len(qids) == len(set(qids))
    for q in result.questions:
        check_question(q)
        assert re.search(r"\d", q["where"])
    if not result.questions and not result.skipped:
        assert result.errors or result.fmt in ("gift", "xml")


ANY_FILENAME = st.sampled_from(["a.csv", "a.xlsx", "a.xml", "a.gift", "a.txt", "a", "a.XLSX", "a.doc"])


@FUZZ
@given(ANY_FILENAME, st.binary(max_size=400))
@example("a.xml", b'<?xml version="1.0" encoding="foo"?><quiz/>')  # LookupError
@example("a.gift", b"q\x00 {T}\n")  # NUL reached the stem and broke PostgreSQL
def test_any_bytes_import_to_a_result(ctx, filename, data):
    check_import(parse_file(filename, data), filename)


@FUZZ
@given(table_file().flatmap(lambda f: st.tuples(st.just(f[0]), st.just(f[1]) | mutated(f[1]))))
def test_table_import_never_raises(ctx, file):
    filename, data = file
    check_import(parse_file(filename, data), filename)


@FUZZ
@given(st.lists(import_question(separators=False), min_size=1, max_size=6).map(_distinct), st.booleans())
def test_clean_table_reads_back_the_questions(ctx, questions, xlsx):
    """Cells written the way our exports write them: ``'=1+2`` for a value starting with =."""
    rows = [list(imports.TEMPLATE_HEADERS)] + [[neutralize(c) for c in table_row(q)] for q in questions]
    if xlsx:
        wb = openpyxl.Workbook()
        for row in rows:
            wb.active.append(row)
        out = io.BytesIO()
        wb.save(out)
        name, data = "bank.xlsx", out.getvalue()
    else:
        name, data = "bank.csv", csv_of(rows).encode()
    result = parse_file(name, data)
    assert result.errors == []
    got = [{k: v for k, v in q.items() if k not in ("qid", "where")} for q in result.questions]
    assert got == questions


# -- GIFT -----------------------------------------------------------------------------------------

def gift_escape(text: str) -> str:
    for ch in "~=#{}:":
        text = text.replace(ch, "\\" + ch)
    return text


GIFT_TEXT = PLAIN.filter(lambda t: "\\" not in t and "//" not in t and not t.startswith("$")
                         and "<" not in t and "&" not in t)


@st.composite
def gift_question(draw) -> str:
    stem = gift_escape(draw(GIFT_TEXT))
    name = f"::{gift_escape(draw(GIFT_TEXT))}::" if draw(st.booleans()) else ""
    fb = f"####{gift_escape(draw(GIFT_TEXT))}" if draw(st.booleans()) else ""
    kind = draw(st.sampled_from(["single", "multiple", "tf", "fill", "num", "essay", "match"]))
    if kind in ("single", "multiple"):
        opts = [gift_escape(t) for t in draw(st.lists(GIFT_TEXT, min_size=2, max_size=8))]
        if kind == "single":
            right = draw(st.integers(0, len(opts) - 1))
            body = " ".join(("=" if i == right else "~") + o for i, o in enumerate(opts))
        else:
            body = " ".join("~%" + draw(st.sampled_from(["50", "-100", "33.3", "100", "0"])) + "%" + o
                            for o in opts)
    elif kind == "tf":
        body = draw(st.sampled_from(["T", "F", "TRUE", "false", "T#对"]))
    elif kind == "fill":
        body = " ".join("=" + gift_escape(t) for t in draw(st.lists(GIFT_TEXT, min_size=1, max_size=3)))
    elif kind == "num":
        body = "#" + draw(st.sampled_from(["3", "0.67:0.01", "1..5", "=%100%3 =%50%4", "abc", ""]))
    elif kind == "essay":
        body = ""
    else:
        body = "=a -> b =c -> d"
    return f"{name}{stem} {{{body}{fb}}}"


@st.composite
def gift_file(draw) -> bytes:
    parts = draw(st.lists(gift_question(), min_size=1, max_size=6))
    if draw(st.booleans()):
        parts.insert(0, "// 题库\n$CATEGORY: 乡镇人大")
    text = "\n\n".join(parts) + "\n"
    return draw(st.sampled_from(encodings(text)))


@FUZZ
@given(st.one_of(gift_file(), gift_file().flatmap(mutated), st.text(
    st.sampled_from(list("{}=~#%:->\\\n T F乡镇0.5/$")), max_size=200).map(str.encode)))
@example(b"q\x00 {T}\n")  # NUL in the stem
@example(b"::n:: q {~%abc%a ~b}\n")
def test_gift_import_never_raises(ctx, data):
    check_import(parse_file("bank.gift", data), "bank.gift")


@FUZZ
@given(st.lists(gift_question(), min_size=1, max_size=6))
def test_valid_gift_questions_are_each_accounted_for(ctx, parts):
    """Each question of a well-formed file is imported, skipped or an error on its own line."""
    text = "\n\n".join(parts) + "\n"
    result = parse_file("bank.gift", text.encode())
    check_import(result, "bank.gift")
    starts = {f"第 {1 + 2 * i} 行" for i in range(len(parts))}
    seen = [q["where"] for q in result.questions] + [s["where"] for s in result.skipped] + [
        e["where"] for e in result.errors]
    assert set(seen) == starts, (seen, starts)


# -- Moodle XML -----------------------------------------------------------------------------------

XML_TEXT = PLAIN.filter(lambda t: not set(t) & set("<>&"))


@st.composite
def moodle_question(draw) -> str:
    kind = draw(st.sampled_from(["multichoice", "truefalse", "shortanswer", "numerical", "essay",
                                 "matching", "category", ""]))
    parts = [f"<name><text>{xml_escape(draw(XML_TEXT))}</text></name>" if draw(st.booleans()) else "",
             f"<questiontext format=\"html\"><text><![CDATA[<p>{draw(XML_TEXT)}</p>]]></text></questiontext>",
             f"<generalfeedback><text>{xml_escape(draw(XML_TEXT))}</text></generalfeedback>"
             if draw(st.booleans()) else ""]
    if kind == "multichoice":
        parts.append(f"<single>{draw(st.sampled_from(['true', 'false', '1', '0', 'maybe']))}</single>")
    if kind == "truefalse":
        answers = [("100", "true"), ("0", "false")]
        if draw(st.booleans()):
            answers = [(f, t) for f, t in reversed(answers)]
    else:
        answers = [(draw(st.sampled_from(["100", "0", "50", "-100", "33.33333", ""])), draw(XML_TEXT))
                   for _ in range(draw(st.integers(0, 8)))]
    for fraction, text in answers:
        parts.append(f'<answer fraction="{fraction}"><text>{xml_escape(text)}</text></answer>')
    attr = f' type="{kind}"' if kind else ""
    return f"<question{attr}>{''.join(parts)}</question>"


@st.composite
def moodle_xml(draw) -> bytes:
    body = "".join(draw(st.lists(moodle_question(), min_size=1, max_size=5)))
    encoding = draw(st.sampled_from(["UTF-8", "utf-8", "GBK", "gb2312", "GB18030", "none"]))
    decl = f'<?xml version="1.0" encoding="{encoding}"?>\n' if encoding != "none" else ""
    text = f"{decl}<quiz>{body}</quiz>"
    data = text.encode("gb18030" if encoding.lower().startswith("gb") else "utf-8")
    kind = draw(st.sampled_from(["clean", "truncate", "fraction", "dtd", "root", "bom", "decl"]))
    if kind == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif kind == "fraction":
        data = data.replace(b'fraction="', b'fraction="' + draw(st.sampled_from(
            [b"abc", b"1e400", b"nan", b"-inf", b"100%", "一百".encode()])), 1)
    elif kind == "dtd":
        data = data.replace(b"<quiz>", b'<!DOCTYPE quiz [<!ENTITY a "aaaa">]><quiz>&a;', 1)
    elif kind == "root":
        data = data.replace(b"<quiz>", b"<moodle>").replace(b"</quiz>", b"</moodle>")
    elif kind == "bom":
        data = b"\xef\xbb\xbf" + data
    elif kind == "decl":
        data = re.sub(rb'encoding="[^"]*"', b'encoding="' + draw(st.sampled_from(
            [b"latin-1", b"utf-16", b"big5", b"foo", b"", b"shift_jis"])) + b'"', data, count=1)
    return data


@FUZZ
@given(st.one_of(moodle_xml(), moodle_xml().flatmap(mutated)))
@example(b'<quiz><question type="multichoice"><questiontext><text>q</text></questiontext>'
         b'<answer fraction="abc"><text>a</text></answer><answer fraction="100"><text>b</text>'
         b'</answer></question></quiz>')  # float("abc") raised ValueError
@example('<?xml version="1.0" encoding="gbk"?><quiz><question type="truefalse"><questiontext>'
         '<text>乡镇人大设常委会。</text></questiontext><answer fraction="100"><text>false</text>'
         '</answer></question></quiz>'.encode("gbk"))  # expat: multi-byte encodings are not supported
@example(b'<?xml version="1.0" encoding="foo"?><quiz/>')  # LookupError
def test_moodle_xml_import_never_raises(ctx, data):
    check_import(parse_file("bank.xml", data), "bank.xml")


def test_moodle_xml_in_gbk_is_read(ctx):
    body = ('<?xml version="1.0" encoding="GB2312"?><quiz><question type="truefalse"><questiontext>'
            '<text>乡镇人大设常委会。</text></questiontext><answer fraction="0"><text>true</text></answer>'
            '<answer fraction="100"><text>false</text></answer></question></quiz>')
    result = parse_file("bank.xml", body.encode("gbk"))
    assert result.errors == [] and result.questions[0]["stem"] == "乡镇人大设常委会。"
    assert result.questions[0]["answer"] == [False]


def test_moodle_xml_bad_fraction_names_the_question(ctx):
    data = (b'<quiz><question type="multichoice"><name><text>T1</text></name><questiontext><text>q'
            b'</text></questiontext><answer fraction="abc"><text>a</text></answer><answer fraction="100">'
            b'<text>b</text></answer></question></quiz>')
    result = parse_file("bank.xml", data)
    assert not result.questions
    [err] = result.errors
    assert "T1" in err["where"] and "fraction" in err["message"] and "abc" in err["message"]


def test_control_characters_are_refused_with_the_row(ctx):
    data = "题型,题干,答案,解析\n判断,乡镇\x00人大,对,解析\n".encode()
    result = parse_file("bank.csv", data)
    assert not result.questions
    assert result.errors[0]["where"] == "第 2 行" and "控制字符" in result.errors[0]["message"]
    result = parse_file("bank.gift", b"q\x01 {T}\n")
    assert not result.questions and result.errors[0]["where"] == "第 1 行"


# -- importing into a bank on a database ----------------------------------------------------------

ANY_IMPORT = st.one_of(table_file(), gift_file().map(lambda d: ("bank.gift", d)),
                       moodle_xml().map(lambda d: ("bank.xml", d)),
                       st.tuples(ANY_FILENAME, st.binary(max_size=200)))


def _bank_state(db):
    from kb.plugins.quizzes.models import Question, Quiz

    return (db.session.scalar(select(func.count()).select_from(Quiz)),
            sorted(db.session.execute(select(Question.qid, Question.stem, Question.retired)).all()))


@FUZZ_DB
@given(file=ANY_IMPORT, valid_only=st.booleans())
def test_bank_import_applies_fully_or_changes_nothing(db_app, file, valid_only):
    from kb.extensions import db
    from kb.plugins.quizzes.models import Question, Quiz

    filename, data = file
    with db_app.app_context(), db_app.test_request_context():
        result = parse_file(filename, data)
        before = _bank_state(db)
        try:
            n = commit_import(result, slug="fuzz-bank", title="题库", org_unit_id=None,
                              valid_only=valid_only)
        except ImportRefused as exc:
            assert str(exc) and result.errors and not valid_only
            assert _bank_state(db) == before
            return
        finally:
            db.session.rollback()
        assert n == len(result.questions)
        after = _bank_state(db)
        if not result.questions:
            assert after == before
            return
        quiz = db.session.scalar(select(Quiz).where(Quiz.slug == "fuzz-bank"))
        stored = {q.qid: q for q in db.session.scalars(select(Question).where(Question.quiz_id == quiz.id))}
        for q in result.questions:
            assert stored[q["qid"]].stem == q["stem"] and not stored[q["qid"]].retired
        db.session.remove()


@FUZZ_DB
@given(st.lists(import_question(separators=False), min_size=1, max_size=6).map(_distinct))
def test_bank_export_reads_back_the_same_questions(app, questions):
    from kb.extensions import db
    from kb.plugins.quizzes.models import Question, Quiz

    with app.app_context(), app.test_request_context():
        db.session.query(Question).delete()
        db.session.query(Quiz).delete()
        db.session.commit()
        result = imports.ImportResult(fmt="table")
        for q in questions:
            answer = q["answer"][0] if q["type"] == "truefalse" else list(q["answer"])
            imports._add(result, dict(q, answer=answer,
                                      options={o["key"]: o["text"] for o in q["options"]}), "x")
        assert result.errors == []
        commit_import(result, slug="rt", title="题库", org_unit_id=None)
        quiz = db.session.scalar(select(Quiz).where(Quiz.slug == "rt"))
        back = parse_file("rt.xlsx", export_xlsx(quiz))
        assert back.errors == []
        strip = ("where",)
        assert [{k: v for k, v in q.items() if k not in strip} for q in back.questions] == \
            [{k: v for k, v in q.items() if k not in strip} for q in result.questions]
        db.session.remove()


# -- roster (花名册): CSV and .xlsx ---------------------------------------------------------------

TOWNSHIPS = ["青山镇", "绿水乡", "城关镇", "甲县/城关镇", "A01", "旧镇", "桃花岛"]
ROLE_WORDS = ["人大代表", "主席团成员", "人大主席", "秘书", "deputy", "chair", "", "管理员", "厨师"]
PHONE = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


@st.composite
def roster_row(draw) -> list:
    name = draw(st.text(CJK, min_size=2, max_size=4) | PLAIN)
    phone = draw(PHONE | st.sampled_from(["", "+86 138 0013 8000", "1.38001E+10", "12345", "１３８００１３８０００"]))
    card = draw(st.from_regex(r"[A-Z][0-9]{3,6}", fullmatch=True) | st.just(""))
    return [name, phone, draw(st.sampled_from(TOWNSHIPS)), draw(st.sampled_from(ROLE_WORDS)), card,
            draw(st.sampled_from(["男", "女", "", "M", "未知"])), draw(st.sampled_from(["汉族", "", "苗族"]))]


ROSTER_HEADERS = [["姓名", "手机号", "乡镇/单位", "职务", "代表证号", "性别", "民族"],
                  ["name", "phone", "township", "role", "card", "gender", "ethnicity"],
                  ["姓名（必填）", "手机号码", "所在乡镇", "角色", "代表证编号", "性别", "民族"]]


@st.composite
def roster_file(draw) -> tuple[str, bytes]:
    header = list(draw(st.sampled_from(ROSTER_HEADERS)))
    if draw(st.integers(0, 4)) == 0:  # a missing or duplicated column
        j = draw(st.integers(0, len(header) - 1))
        header[j] = draw(st.sampled_from(["", "备注", "手机", "姓名"]))
    rows = [header] + draw(st.lists(roster_row(), min_size=0, max_size=6))
    for _ in range(draw(st.integers(0, 3))):
        row = draw(st.sampled_from(rows))
        j = draw(st.integers(0, len(row)))
        row[j:j + 1] = [draw(ODD_CELLS | st.sampled_from(["", 13800138000, 1.38e10, "=A2"]))]
    if draw(st.booleans()):
        rows.insert(0, ["青山镇人大代表花名册"])
    if draw(st.booleans()):
        return draw(st.sampled_from(["r.xlsx", "r.xlsm", "花名册"])), draw(odd_xlsx(rows))
    text = csv_of([[str(c) for c in row] for row in rows], draw(st.sampled_from([",", "\t", ";"])))
    return draw(st.sampled_from(["r.csv", "r.txt", "r", "r.tsv"])), draw(st.sampled_from(encodings(text)))


def check_table(headers, rows, errors) -> None:
    assert all(isinstance(e, str) and e.strip() for e in errors)
    numbers = [n for n, _r in rows]
    assert numbers == sorted(set(numbers)) and all(n >= 1 for n in numbers)
    for _n, raw in rows:
        assert set(raw) <= {f for f, _label in roster.COLUMNS}
        assert all(isinstance(v, str) for v in raw.values())
    if errors:
        return
    assert rows


def check_preview(preview) -> None:
    labels = {str(label) for _f, label in roster.COLUMNS}
    for o in preview.outcomes:
        assert (o.status == "error") == bool(o.errors)
        for e in o.errors:
            assert e.row == o.row and e.message
            assert e.column in labels or e.column.strip(), e
            assert f"第{o.row}行" in str(e)
        if o.status != "error":
            d = o.data
            assert d["name"] and d["org_id"] and d["role"] in roster.IMPORT_ROLES
            assert d["phone"] or d["deputy_card_no"]
            assert len(d["name"]) <= 64 and not has_bad_chars(d["name"])
            assert len(d["ethnicity"] or "") <= 16 and len(d["deputy_card_no"] or "") <= 32


@FUZZ
@given(st.sampled_from(["r.csv", "r.xlsx", "r.xls", "r", "r.txt", "r.pdf"]), st.binary(max_size=400),
       st.booleans())
def test_roster_any_bytes_read_or_clear_errors(ctx, filename, data, require_org):
    check_table(*roster.read_table(filename, data, require_org=require_org))


@FUZZ
@given(roster_file().flatmap(lambda f: st.tuples(st.just(f[0]), st.just(f[1]) | mutated(f[1]))),
       st.booleans())
def test_roster_files_read_or_clear_errors(ctx, file, require_org):
    """Also the attendance plugin's enrolment import, which reads without the 乡镇 column."""
    filename, data = file
    check_table(*roster.read_table(filename, data, require_org=require_org))


def _user_state(db):
    from kb.models import User

    return sorted(db.session.execute(select(User.id, User.name, User.phone, User.deputy_card_no,
                                            User.org_unit_id, User.role, User.gender,
                                            User.ethnicity)).all())


@pytest.fixture
def roster_db(db_app):
    from kb.extensions import db

    from .test_roster import make_orgs

    with db_app.app_context():
        make_orgs(db)
    return db_app


@FUZZ_DB
@given(file=roster_file(), only_valid=st.booleans())
def test_roster_import_applies_fully_or_changes_nothing(roster_db, file, only_valid):
    from kb.extensions import db

    filename, data = file
    with roster_db.app_context(), roster_db.test_request_context():
        preview = roster.build_preview(filename, data, None)
        check_preview(preview)
        before = _user_state(db)
        try:
            result = roster.commit(roster.Preview.from_payload(preview.to_payload()), None,
                                   only_valid=only_valid)
        except roster.RosterError as exc:
            assert str(exc)
            assert preview.file_errors or (not preview.ok and not only_valid)
            assert _user_state(db) == before
            return
        after = _user_state(db)
        assert len(after) == len(before) + len(result.created) == len(before) + preview.counts["new"]
        assert result.updated == preview.counts["updated"]
        db.session.remove()


@FUZZ_DB
@given(people=st.lists(roster_row(), min_size=1, max_size=5), xlsx=st.booleans())
def test_roster_export_reimports_unchanged(roster_db, people, xlsx):
    from kb.extensions import db
    from kb.models import User

    with roster_db.app_context(), roster_db.test_request_context():
        db.session.query(User).delete()
        db.session.commit()
        preview = roster.build_preview("r.csv", csv_of([ROSTER_HEADERS[0], *people]).encode(), None)
        roster.commit(preview, None, only_valid=True)
        users = db.session.scalars(select(User).order_by(User.id)).all()
        if not users:
            return
        rows = roster.export_rows(users)
        data = roster.to_xlsx(rows) if xlsx else roster.to_csv(rows)
        again = roster.build_preview("r.xlsx" if xlsx else "r.csv", data, None)
        assert again.ok, again.errors
        changed = [(o.row, o.status, o.changes) for o in again.outcomes if o.status != "unchanged"]
        assert again.counts["unchanged"] == len(users), (rows, changed)
        db.session.remove()


# -- regressions found by the properties above ----------------------------------------------------

def _rezip(data: bytes, name: str, edit) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            dst.writestr(info, edit(body) if info.filename == name else body)
    return out.getvalue()


def test_yaml_aliases_that_expand_enormously_are_refused_quickly(ctx):
    """Seven levels of ten aliases each were 10 million values (14 s, and more memory with each
    level): now an error on the line where the budget ran out."""
    text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 7))
    data, errors = parse_quiz(text)
    assert data is None and len(errors) == 1 and "别名" in errors[0][1]


def test_yaml_duplicate_key_is_a_line_error(ctx):
    """A repeated field was silently dropped (the first or the last one won)."""
    assert parse_quiz("title: 甲\ntitle: 乙\n") == (None, [(2, "字段 'title' 重复")])


def test_yaml_character_yaml_refuses_names_its_line(ctx):
    """ReaderError was raised outside the try (an unhandled exception)."""
    data, errors = parse_quiz("title: 测验\nquestions:\n  - stem: a\x00b\n")
    assert data is None and errors[0][0] == 3 and "U+0000" in errors[0][1]


def test_damaged_sheet_inside_a_readable_workbook_is_an_error(ctx):
    """openpyxl reads a sheet lazily: a broken sheet raised ParseError from the iteration."""
    data = _rezip(imports.template_xlsx(), "xl/worksheets/sheet1.xml", lambda b: b[:len(b) // 2])
    result = parse_file("bank.xlsx", data)
    assert not result.questions and result.errors[0]["where"] == "bank.xlsx"


def test_a_file_without_questions_says_so(ctx):
    """A header-only sheet, or a GIFT file of comments, imported nothing without a word."""
    for name, data in (("bank.csv", ",".join(imports.TEMPLATE_HEADERS).encode()),
                       ("bank.gift", "// 只有注释\n".encode()), ("bank.xml", b"<quiz></quiz>")):
        result = parse_file(name, data)
        assert result.errors == [{"where": name, "message": "文件中没有找到题目"}], name


def test_failed_bank_import_leaves_nothing_behind(app, monkeypatch):
    """The new bank was flushed before the questions: a failure kept it in the session."""
    from kb.extensions import db
    from kb.plugins.quizzes.models import Quiz

    def boom(*_a, **_k):
        raise RuntimeError("disk full")

    with app.app_context(), app.test_request_context():
        result = parse_file("bank.xlsx", imports.template_xlsx())
        monkeypatch.setattr(imports, "store_questions", boom)
        with pytest.raises(RuntimeError):
            commit_import(result, slug="new-bank", title="题库", org_unit_id=None)
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Quiz)) == 0


def test_bank_export_of_formula_like_text_reads_back_the_same(app):
    """Exports write '-5… (so Excel shows text); the import took the ' as part of the stem, so a
    re-imported export duplicated the question under a new id."""
    from kb.extensions import db
    from kb.plugins.quizzes.models import Question, Quiz

    with app.app_context(), app.test_request_context():
        result = parse_file("bank.csv", "题型,题干,答案,解析\n填空,-5 的绝对值是____,5,=5\n".encode())
        commit_import(result, slug="b", title="题库", org_unit_id=None)
        back = parse_file("b.xlsx", export_xlsx(db.session.scalar(select(Quiz))))
        assert back.questions[0]["stem"] == "-5 的绝对值是____" and back.questions[0]["explanation"] == "=5"
        commit_import(back, slug="b", title=None, org_unit_id=None)
        assert db.session.scalar(select(func.count()).select_from(Question)) == 1


def test_roster_export_round_trips_same_named_townships_and_formula_text(roster_db):
    """Two townships called 城关镇: the export wrote the bare name, which the import refuses as
    ambiguous; and a name the export wrote as '@… came back changed."""
    from kb.extensions import db
    from kb.models import User

    with roster_db.app_context(), roster_db.test_request_context():
        lines = [",".join(ROSTER_HEADERS[0]), "@王,13800000001,甲县/城关镇,,,,", "李四,13800000002,B02,,,,"]
        roster.commit(roster.build_preview("r.csv", "\n".join(lines).encode(), None), None)
        rows = roster.export_rows(db.session.scalars(select(User).order_by(User.id)))
        assert [r["org"] for r in rows] == ["甲县/城关镇", "乙县/城关镇"]
        for data in (roster.to_csv(rows), roster.to_xlsx(rows)):
            again = roster.build_preview("r.xlsx" if data.startswith(b"PK") else "r.csv", data, None)
            assert again.counts == {"new": 0, "updated": 0, "unchanged": 2, "error": 0}, again.errors
