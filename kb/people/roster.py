"""Roster (花名册) import and export.

Import is two steps. :func:`build_preview` reads an ``.xlsx`` or ``.csv`` file (UTF-8 with or
without BOM, or GBK/GB18030 as Excel on Chinese Windows saves it), matches every row against the
database and reports each row's outcome (new / updated / unchanged / error with the row and the
column named) without writing anything. The preview is stored as JSON (:meth:`Preview.to_payload`)
between the two requests; :func:`commit` checks it again against the database and writes all
rows in one transaction, or nothing.

People are matched by phone or 代表证号. Import only assigns the township roles (deputy,
presidium, chair, secretary) in active townships inside the importer's scope; county staff and
admins are managed one by one. A blank optional cell (phone, card, role, gender, ethnicity)
leaves an existing person's value as it is; for a new person a blank role means deputy.

Export writes the same columns to ``.xlsx`` (every value a string cell) and CSV (UTF-8 with BOM so
Excel opens it); both neutralise values that a spreadsheet would run as a formula.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import PurePath

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..authz import managed_org_ids
from ..content.files import DecodeError, decode_bytes
from ..exports import csv_bytes, neutralize, unneutralize, xlsx_bytes  # noqa: F401  (neutralize re-exported)
from ..extensions import db
from ..i18n import join_list, parens
from ..models import OrgUnit, User

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 20_000
# An .xlsx is a zip: refuse one that would unpack to more than this (a "zip bomb").
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
# Stop reading a sheet after this many blank rows in a row (formatted but empty rows).
MAX_BLANK_RUN = 1000
# How many rows above the header may hold a title ("XX镇人大代表花名册").
HEADER_SEARCH_ROWS = 10
CODE_DAYS = 30
FLUSH_EVERY = 1000
_IN_CHUNK = 2000  # values per SQL IN (...) list

# Export headers and the column names in messages, in the reader's language; import accepts
# both languages (_HEADER_ALIASES; tests/test_i18n.py checks the English catalogue against it).
COLUMNS = [
    ("name", _l("姓名")),
    ("phone", _l("手机号")),
    ("org", _l("乡镇/单位")),
    ("role", _l("职务")),
    ("deputy_card_no", _l("代表证号")),
    ("gender", _l("性别")),
    ("ethnicity", _l("民族")),
]
COLUMN_LABELS = dict(COLUMNS)

IMPORT_ROLES = ("deputy", "presidium", "chair", "secretary")
ROLE_LABELS = {
    "deputy": _l("人大代表"),
    "presidium": _l("主席团成员"),
    "chair": _l("人大主席/副主席"),
    "secretary": _l("人大秘书"),
    "county_staff": _l("县人大常委会工作人员"),
    "admin": _l("系统管理员"),
}
# Gender is stored as 男/女 (what Chinese rosters hold); exports show it in the reader's language.
GENDER_LABELS = {"男": _l("男"), "女": _l("女")}

STALE_MESSAGE = _l("数据已变化，请重新预览")


class RosterError(Exception):
    """The roster cannot be committed (the message is for the person who uploaded it)."""


# -- results ----------------------------------------------------------------------------------

@dataclass
class CellError:
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return _("第%(row)s行「%(column)s」：%(message)s", row=self.row, column=self.column,
                 message=self.message)


def _empty_data() -> dict:
    return {"name": "", "phone": None, "org_id": None, "org_name": "", "role": "",
            "deputy_card_no": None, "gender": "", "ethnicity": ""}


@dataclass
class RowOutcome:
    row: int
    status: str  # "new" | "updated" | "unchanged" | "error"
    data: dict
    user_id: int | None = None
    changes: dict = field(default_factory=dict)  # field -> [old, new]
    errors: list[CellError] = field(default_factory=list)
    # Things worth knowing that are not errors (e.g. the matched account is deactivated).
    notes: list[str] = field(default_factory=list)

    def to_payload(self) -> dict:
        return {"row": self.row, "status": self.status, "data": dict(self.data),
                "user_id": self.user_id, "changes": {k: list(v) for k, v in self.changes.items()},
                "errors": [[e.row, e.column, e.message] for e in self.errors],
                "notes": list(self.notes)}

    @classmethod
    def from_payload(cls, d: dict) -> RowOutcome:
        return cls(row=int(d["row"]), status=d["status"], data=dict(d.get("data") or {}),
                   user_id=d.get("user_id"),
                   changes={k: list(v) for k, v in (d.get("changes") or {}).items()},
                   errors=[CellError(int(r), c, m) for r, c, m in d.get("errors") or []],
                   notes=list(d.get("notes") or []))


@dataclass
class Preview:
    filename: str
    outcomes: list[RowOutcome]
    file_errors: list[str]

    @property
    def counts(self) -> dict[str, int]:
        counts = {"new": 0, "updated": 0, "unchanged": 0, "error": 0}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return not self.file_errors and all(o.status != "error" for o in self.outcomes)

    @property
    def errors(self) -> list[str]:
        """Every problem as one line: file errors first, then each row's errors."""
        return list(self.file_errors) + [str(e) for o in self.outcomes for e in o.errors]

    def to_payload(self) -> dict:
        return {"version": 1, "filename": self.filename, "file_errors": list(self.file_errors),
                "outcomes": [o.to_payload() for o in self.outcomes]}

    @classmethod
    def from_payload(cls, d: dict) -> Preview:
        return cls(filename=d.get("filename", ""),
                   outcomes=[RowOutcome.from_payload(o) for o in d.get("outcomes") or []],
                   file_errors=list(d.get("file_errors") or []))


@dataclass
class CommitResult:
    created: list[tuple[User, str]]  # (user, one-time code): show the code once, never store it
    updated: int
    unchanged: int
    skipped: int = 0  # error rows left out with only_valid=True


# -- text normalisation -----------------------------------------------------------------------

def _nfkc(text: str) -> str:
    """Full-width letters, digits, punctuation and spaces → their ASCII forms."""
    return unicodedata.normalize("NFKC", text)


_SPACES = re.compile(r"\s+")
_HEADER_DROP = re.compile(r"[\s_\-.*:：]+")
_TRAILING_PAREN = re.compile(r"\([^()]*\)$")


def _header_key(text: str) -> str:
    return _HEADER_DROP.sub("", _nfkc(text).casefold())


_HEADER_ALIASES = {
    "name": ("姓名", "名字", "name", "fullname"),
    "phone": ("手机号", "手机", "电话", "手机号码", "联系电话", "电话号码", "移动电话",
              "phone", "mobile", "phonenumber", "mobilephone", "tel", "telephone", "cellphone",
              "mobilenumber"),
    "org": ("乡镇/单位", "乡镇(街道)", "所在乡镇", "所在乡镇(街道)", "乡镇", "乡镇街道", "乡镇/街道",
            "单位", "所在单位", "township", "unit", "organisation", "organization", "org",
            "township/unit", "township/organization", "township/organisation"),
    "role": ("职务", "角色", "role", "position"),
    "deputy_card_no": ("代表证号", "代表证编号", "代表证", "deputycardno", "deputycardnumber",
                       "deputycard", "card", "cardno", "cardnumber"),
    "gender": ("性别", "gender", "sex"),
    "ethnicity": ("民族", "ethnicity", "ethnic", "ethnicgroup"),
}
_HEADERS = {_header_key(alias): f for f, aliases in _HEADER_ALIASES.items() for alias in aliases}


def header_field(text: str) -> str | None:
    """The canonical field a header cell stands for ("手机号码" → "phone"), or None."""
    key = _header_key(text)
    if not key:
        return None
    if key in _HEADERS:
        return _HEADERS[key]
    # "姓名(必填)", "手机号（选填）": drop a trailing note in brackets.
    stripped = _TRAILING_PAREN.sub("", key)
    return _HEADERS.get(stripped) if stripped != key else None


_PHONE_DROP = re.compile(r"[\s\-‐‑‒–—―()]+")
_PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?e\+?\d+$", re.IGNORECASE)


def normalize_phone(text: str | None) -> str:
    """Drop spaces, dashes and a +86/0086 prefix; full-width digits become ASCII.

    The result still has to match :data:`_PHONE_RE` (use :func:`valid_phone`).
    """
    s = _PHONE_DROP.sub("", _nfkc(text or ""))
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    elif s.startswith("86") and len(s) == 13:
        s = s[2:]
    return s


def valid_phone(phone: str) -> bool:
    return bool(_PHONE_RE.match(phone))


def normalize_card(text: str | None) -> str:
    """Full-width characters become ASCII and spaces go; the case is kept."""
    return _SPACES.sub("", _nfkc(text or ""))


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\U00020000" <= ch <= "\U0003134f"


def normalize_name(text: str | None) -> str:
    """Trim and collapse spaces; "张　三" (padded to line up in a table) becomes "张三"."""
    s = _SPACES.sub(" ", _nfkc(text or "")).strip()
    if " " in s and all(_is_cjk(ch) or ch == " " for ch in s):
        s = s.replace(" ", "")
    return s


def _org_key(text: str) -> str:
    return _SPACES.sub("", _nfkc(text or "")).casefold()


def _role_key(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", _nfkc(text or "").casefold())


_ROLE_WORDS = {
    "deputy": ("人大代表", "代表", "乡镇人大代表", "乡人大代表", "镇人大代表", "deputy"),
    "presidium": ("主席团成员", "主席团", "presidium", "presidium member"),
    "chair": ("人大主席", "主席", "人大副主席", "副主席", "人大主席/副主席", "乡镇人大主席",
              "乡镇人大副主席", "chair", "vice chair", "vice-chair", "chairman",
              "congress chair", "congress vice-chair", "congress chair/vice-chair", "chair/vice-chair"),
    "secretary": ("人大秘书", "秘书", "干事", "人大干事", "人大秘书/干事", "secretary",
                  "congress secretary"),
    # Recognised so the error can say why, never assigned by import.
    "county_staff": ("县人大常委会工作人员", "工作人员", "county_staff", "county staff",
                     "county people's congress standing committee staff"),
    "admin": ("系统管理员", "管理员", "admin", "administrator", "system administrator"),
}
_ROLES = {_role_key(w): role for role, words in _ROLE_WORDS.items() for w in words}
_ROLE_HELP = _l("可填：人大代表、主席团成员、人大主席、人大副主席、人大秘书、干事"
                "（或 deputy、presidium、chair、secretary）；留空视为人大代表")

_GENDERS = {"男": "男", "女": "女", "男性": "男", "女性": "女", "m": "男", "male": "男",
            "f": "女", "female": "女"}



# -- reading the file -------------------------------------------------------------------------

@dataclass
class _Table:
    headers: list[str] = field(default_factory=list)  # the header row as written
    columns: dict[str, str] = field(default_factory=dict)  # field -> header as written
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    cell_errors: dict[int, list[CellError]] = field(default_factory=dict)


# Each cell is (text, is_formula); each record is (spreadsheet row number, cells).
_Records = Iterator[tuple[int, list[tuple[str, bool]]]]


def read_table(filename: str, data: bytes, *, require_org: bool = True
               ) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[str]]:
    """Read a roster: (headers as written, [(row number, {field: text})], file errors).

    Row numbers are the spreadsheet's (the header is row 1 unless title rows sit above it).
    Rows whose recognised cells are all blank are left out; unknown columns are ignored.
    ``require_org=False`` accepts files without a 乡镇/单位 column (enrolling known people
    in a class by name and phone).
    """
    table = _read(filename, data, require_org)
    return table.headers, table.rows, table.file_errors


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"Rar!", b"7z\xbc\xaf",
                 b"\x1f\x8b")
_NOT_A_SHEET = _l("文件不是表格：请上传 Excel 工作簿（.xlsx）或 CSV 文件（.csv）")


def _read(filename: str, data: bytes, require_org: bool = True) -> _Table:
    table = _Table()
    if not data:
        table.file_errors.append(_("文件是空的"))
        return table
    if len(data) > MAX_BYTES:
        # A caller may read only MAX_BYTES + 1 bytes of an upload: then the size is unknown.
        size = _("超过上限") if len(data) == MAX_BYTES + 1 else _mb(len(data))
        table.file_errors.append(
            _("文件过大（%(size)s），上限为 %(limit)s MB；请分成几个文件导入",
              size=size, limit=MAX_BYTES // 1024 // 1024))
        return table
    ext = PurePath(filename or "").suffix.lower()
    if data.startswith(b"PK\x03\x04") or ext in (".xlsx", ".xlsm"):
        return _tabulate(table, _xlsx_records(table, data), require_org)
    if data.startswith(b"\xd0\xcf\x11\xe0") or ext in (".xls", ".et"):
        table.file_errors.append(_("不支持旧版 Excel（.xls）或 WPS 格式，也不支持加密的工作簿："
                                   "请在 Excel 中另存为 .xlsx 或「CSV UTF-8」后再上传"))
        return table
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        table.file_errors.append(_("文件是 UTF-16 编码（Excel 的「Unicode 文本」）："
                                   "请另存为「CSV UTF-8」或 .xlsx 后再上传"))
        return table
    if data.startswith(_BINARY_MAGIC) or ext not in ("", ".csv", ".txt", ".tsv"):
        table.file_errors.append(str(_NOT_A_SHEET))
        return table
    text = _decode_csv(table, data)
    if text is None:
        return table
    return _tabulate(table, _csv_records(table, text), require_org)


def _decode_csv(table: _Table, data: bytes) -> str | None:
    decoded = None
    for candidate in (data, data[3:] if data.startswith(b"\xef\xbb\xbf") else None):
        if candidate is None:
            continue
        try:
            decoded = decode_bytes(candidate)
            break
        except (DecodeError, UnicodeDecodeError):  # e.g. a BOM followed by GBK text
            continue
    if decoded is None or decoded.encoding not in ("utf-8", "utf-8-sig"):
        # Not all UTF-8: refuse a file whose lines mix UTF-8 and GBK rather than garble half.
        utf8, other = _encoding_by_line(data)
        if utf8 and other:
            table.file_errors.append(
                _("文件混用了两种编码：第 %(utf8)s 行是 UTF-8，第 %(other)s 行"
                  "不是 UTF-8（可能是 GBK）。请用 Excel 或记事本把整个文件另存为「CSV UTF-8」后再上传",
                  utf8=_line_list(utf8), other=_line_list(other)))
            return None
    if decoded is None:
        table.file_errors.append(str(_NOT_A_SHEET))
        return None
    text = decoded.text.rstrip("\x1a")  # DOS end-of-file marker
    if any(ch < " " and ch not in "\t\r\n" or ch == "\x7f" for ch in text):
        table.file_errors.append(_NOT_A_SHEET + parens(_("文件含有二进制内容")))
        return None
    return text


def _encoding_by_line(data: bytes) -> tuple[list[int], list[int]]:
    """Line numbers (1-based) of lines that are surely UTF-8, and of those that are not UTF-8.

    GBK bytes are often valid UTF-8 by accident ("陆伟" is C2 BD CE B0, "½ΰ" in UTF-8), but
    then they decode to Latin, Greek or Hebrew letters, not Chinese. So a line counts as UTF-8
    only if every non-ASCII character it decodes to is CJK (or full-width punctuation).
    """
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    utf8: list[int] = []
    other: list[int] = []
    for number, line in enumerate(body.split(b"\n"), 1):  # 0x0A is never part of a GBK pair
        if line.isascii():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            other.append(number)
            continue
        if all(ch.isascii() or _is_cjk_text(ch) for ch in text):
            utf8.append(number)
    return utf8, other


def _is_cjk_text(ch: str) -> bool:
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0xFF00 <= o <= 0xFFEF
            or 0x20000 <= o <= 0x3134F)


def _line_list(numbers: list[int], limit: int = 5) -> str:
    shown = join_list(numbers[:limit])
    return shown + (_(" 等 %(n)s 行", n=len(numbers)) if len(numbers) > limit else "")


def _csv_records(table: _Table, text: str) -> _Records:
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    delimiter = max(counts, key=counts.get) if any(counts.values()) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    number = 0
    try:
        for number, record in enumerate(reader, 1):
            yield number, [(cell, False) for cell in record]
    except csv.Error as exc:
        table.file_errors.append(_("CSV 格式错误（第 %(line)s 行附近）：%(error)s", line=number + 1, error=exc))


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _xlsx_records(table: _Table, data: bytes) -> _Records:
    import openpyxl

    bad = _("文件不能作为 Excel 工作簿（.xlsx）打开：文件可能已损坏，或不是表格文件")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
        if unpacked > MAX_UNZIPPED_BYTES:
            table.file_errors.append(_("工作簿解压后过大（%(size)s），无法读取", size=_mb(unpacked)))
            return
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception:  # BadZipFile, KeyError, InvalidFileException, XML errors…
        table.file_errors.append(bad)
        return
    try:
        ws = wb.active if wb.active is not None and hasattr(wb.active, "iter_rows") else None
        if ws is None:
            ws = wb.worksheets[0] if wb.worksheets else None
        if ws is None:
            table.file_errors.append(_("工作簿中没有工作表"))
            return
        for number, row in enumerate(ws.iter_rows(), 1):
            yield number, [(_cell_text(c.value), c.data_type == "f") for c in row]
    except Exception:
        table.file_errors.append(bad)
    finally:
        wb.close()


def _tabulate(table: _Table, records: _Records, require_org: bool = True) -> _Table:
    """Find the header row, map its cells to fields, and collect the data rows."""
    col_index: dict[str, int] = {}
    first_headers: list[str] | None = None
    searched = 0
    blank_run = 0
    try:
        for number, cells in records:
            if not col_index:
                texts = [t.strip() for t, _ in cells]
                while texts and not texts[-1]:
                    texts.pop()
                if not texts:
                    continue
                if first_headers is None:
                    first_headers = texts
                fields = {i: header_field(t) for i, t in enumerate(texts)}
                if "name" not in fields.values():
                    searched += 1
                    if searched >= HEADER_SEARCH_ROWS:
                        break
                    continue
                table.headers = texts
                for i, f in fields.items():
                    if f is None:
                        continue
                    if f in col_index:
                        table.file_errors.append(
                            _("「%(first)s」和「%(second)s」两列都表示%(field)s，请只保留一列",
                              first=table.columns[f], second=texts[i], field=COLUMN_LABELS[f]))
                        continue
                    col_index[f] = i
                    table.columns[f] = texts[i]
                missing = []
                if "org" not in col_index and require_org:
                    missing.append(_("缺少必填列「%(column)s」", column=COLUMN_LABELS["org"]))
                if "phone" not in col_index and "deputy_card_no" not in col_index:
                    missing.append(_("缺少「%(phone)s」或「%(card)s」列（至少要有一列）",
                                     phone=COLUMN_LABELS["phone"], card=COLUMN_LABELS["deputy_card_no"]))
                if missing:
                    table.file_errors.append(
                        _("%(problems)s。第%(row)s行的列为：%(columns)s", problems=_("；").join(missing),
                          row=number, columns=join_list(texts)))
                if table.file_errors:
                    return table
                continue
            values: dict[str, str] = {}
            formulas: list[str] = []
            for f, i in col_index.items():
                text, is_formula = cells[i] if i < len(cells) else ("", False)
                values[f] = text.strip()
                if is_formula:
                    formulas.append(f)
            if not any(values.values()):
                blank_run += 1
                if blank_run > MAX_BLANK_RUN:
                    break
                continue
            blank_run = 0
            if len(table.rows) >= MAX_ROWS:
                table.file_errors.append(
                    _("行数过多：超过 %(limit)s 行的上限，请分成几个文件导入", limit=MAX_ROWS))
                table.rows.clear()
                table.cell_errors.clear()
                return table
            table.rows.append((number, values))
            if formulas:
                table.cell_errors[number] = [
                    CellError(number, table.columns[f], _("单元格是公式，请粘贴为数值"))
                    for f in formulas]
    finally:
        close = getattr(records, "close", None)
        if close:
            close()
    if table.file_errors:
        return table
    if not col_index:
        table.file_errors.append(
            _("缺少必填列「%(column)s」。找到的列：%(found)s", column=COLUMN_LABELS["name"],
              found=join_list(first_headers)) if first_headers else _("文件中没有数据"))
    elif not table.rows:
        table.file_errors.append(_("表格只有表头，没有人员数据"))
    return table


# -- organisations ----------------------------------------------------------------------------

@dataclass
class _Org:
    id: int
    parent_id: int | None
    kind: str
    name: str
    code: str | None
    is_active: bool


class _Orgs:
    """Every org unit, loaded once; the active townships in scope indexed by name and code."""

    def __init__(self, scope: set[int] | None):
        rows = db.session.execute(select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.kind,
                                         OrgUnit.name, OrgUnit.code, OrgUnit.is_active)).all()
        self.scope = scope
        self.all = {r.id: _Org(*r) for r in rows}
        self.allowed: set[int] = set()
        self.by_name: dict[str, list[_Org]] = {}
        self.by_code: dict[str, _Org] = {}
        self.inactive: dict[str, _Org] = {}
        for org in self.all.values():
            if org.kind != "township" or (scope is not None and org.id not in scope):
                continue
            if not org.is_active:
                self.inactive.setdefault(_org_key(org.name), org)
                if org.code:
                    self.inactive.setdefault(_org_key(org.code), org)
                continue
            self.allowed.add(org.id)
            self.by_name.setdefault(_org_key(org.name), []).append(org)
            if org.code:
                self.by_code[_org_key(org.code)] = org

    def name(self, org_id: int | None) -> str:
        org = self.all.get(org_id) if org_id is not None else None
        return org.name if org else ""

    def ancestors(self, org: _Org) -> list[_Org]:
        out = []
        seen = {org.id}
        while org.parent_id is not None and org.parent_id in self.all and org.parent_id not in seen:
            org = self.all[org.parent_id]
            seen.add(org.id)
            out.append(org)
        return out

    def describe(self, org: _Org) -> str:
        parent = self.all.get(org.parent_id) if org.parent_id else None
        label = (parent.name if parent else "") + org.name
        return label + (parens(_("代码 %(code)s", code=org.code)) if org.code else "")

    def resolve(self, text: str) -> tuple[_Org | None, str]:
        """The township a 乡镇/单位 cell names, or (None, why not)."""
        key = _org_key(text)
        if key in self.by_code:
            return self.by_code[key], ""
        candidates = self.by_name.get(key, [])
        if not candidates and "/" in key:
            # "甲县/城关镇": the township's name after the last slash, its ancestors before it.
            *outer, last = [p for p in key.split("/") if p]
            candidates = [
                org for org in self.by_name.get(last, [])
                if all(any(_org_key(a.name) == p or (a.code and _org_key(a.code) == p)
                           for a in self.ancestors(org)) for p in outer)
            ]
        if len(candidates) == 1:
            return candidates[0], ""
        if len(candidates) > 1:
            names = join_list(self.describe(o) for o in candidates[:10])
            example = candidates[0]
            parent = self.all.get(example.parent_id) if example.parent_id else None
            if parent:
                return None, _("「%(text)s」对应多个同名乡镇：%(names)s；请改填乡镇代码，或写成「%(example)s」",
                               text=text, names=names, example=f"{parent.name}/{example.name}")
            return None, _("「%(text)s」对应多个同名乡镇：%(names)s；请改填乡镇代码", text=text, names=names)
        if key in self.inactive:
            return None, _("乡镇「%(text)s」已停用", text=text)
        if self.scope is None:
            return None, _("找不到乡镇「%(text)s」：请填写已启用乡镇的名称或代码", text=text)
        return None, _("找不到乡镇「%(text)s」：请填写您管理范围内已启用乡镇的名称或代码", text=text)


# -- preview ----------------------------------------------------------------------------------

def _scope(importer) -> set[int] | None:
    return None if importer is None else managed_org_ids(importer)


def _parse_row(row: int, raw: dict[str, str], columns: dict[str, str], orgs: _Orgs
               ) -> tuple[dict, list[CellError], bool]:
    """Normalise one row's cells; returns (data, errors, role given)."""
    data = _empty_data()
    errors: list[CellError] = []
    raw = {f: unneutralize(v) for f, v in raw.items()}  # "'=1+2" as our export writes "=1+2"

    def err(f: str, message: str) -> None:
        errors.append(CellError(row, columns.get(f) or str(COLUMN_LABELS[f]), message))

    name = normalize_name(raw.get("name"))
    if not name:
        err("name", _("姓名不能为空"))
    elif len(name) > 64:
        err("name", _("姓名过长（最多 64 个字）"))
    data["name"] = name

    phone_raw = raw.get("phone", "")
    if phone_raw:
        phone = normalize_phone(phone_raw)
        if _SCIENTIFIC.match(phone):
            err("phone", _("手机号「%(value)s」被 Excel 转成了科学计数法：请把该列设为「文本」格式"
                           "后重新填写", value=phone_raw))
        elif not valid_phone(phone):
            err("phone", _("手机号「%(value)s」格式不正确，应为 11 位手机号（如 13800138000）",
                           value=phone_raw))
        else:
            data["phone"] = phone

    card_raw = raw.get("deputy_card_no", "")
    if card_raw:
        card = normalize_card(card_raw)
        if _SCIENTIFIC.match(card):
            err("deputy_card_no", _("代表证号「%(value)s」被 Excel 转成了科学计数法：请把该列设为"
                                    "「文本」格式后重新填写", value=card_raw))
        elif len(card) > 32:
            err("deputy_card_no", _("代表证号过长（最多 32 个字符）"))
        else:
            data["deputy_card_no"] = card

    if not phone_raw and not card_raw:
        err("phone" if "phone" in columns else "deputy_card_no", _("手机号和代表证号至少填写一项"))

    org_raw = raw.get("org", "")
    if not org_raw:
        err("org", _("乡镇/单位不能为空"))
    else:
        org, why = orgs.resolve(org_raw)
        if org is None:
            err("org", why)
        else:
            data["org_id"], data["org_name"] = org.id, org.name

    role_raw = raw.get("role", "")
    role_given = bool(role_raw)
    if role_raw:
        role = _ROLES.get(_role_key(role_raw))
        if role is None:
            err("role", _("未知职务「%(value)s」，%(help)s", value=role_raw, help=_ROLE_HELP))
        elif role not in IMPORT_ROLES:
            err("role", _("导入不能授予该角色（%(role)s）：县人大常委会工作人员和系统管理员"
                          "请在用户管理中逐个设置", role=ROLE_LABELS[role]))
        else:
            data["role"] = role
    else:
        data["role"] = "deputy"

    gender_raw = raw.get("gender", "")
    if gender_raw:
        gender = _GENDERS.get(_nfkc(gender_raw).strip().casefold())
        if gender is None:
            err("gender", _("性别「%(value)s」无法识别，请填「男」或「女」", value=gender_raw))
        else:
            data["gender"] = gender

    ethnicity = _SPACES.sub("", _nfkc(raw.get("ethnicity", "")))
    if len(ethnicity) > 16:
        err("ethnicity", _("民族过长（最多 16 个字）"))
    else:
        data["ethnicity"] = ethnicity
    return data, errors, role_given


@dataclass
class _Item:
    row: int
    data: dict
    errors: list[CellError]
    role_given: bool = True
    # Blank optional cells (phone, card, gender, ethnicity) keep an existing person's value.
    keep_blank: bool = True


def _chunks(values: Sequence, size: int = _IN_CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _load_users(phones: set[str], cards: set[str]) -> tuple[dict[str, User], dict[str, User]]:
    by_phone: dict[str, User] = {}
    by_card: dict[str, User] = {}
    for chunk in _chunks(sorted(phones)):
        for u in db.session.scalars(select(User).where(User.phone.in_(chunk))):
            by_phone[u.phone] = u
    for chunk in _chunks(sorted(cards)):
        for u in db.session.scalars(select(User).where(User.deputy_card_no.in_(chunk))):
            by_card[u.deputy_card_no] = u
    return by_phone, by_card


_COMPARED = ("name", "phone", "org_id", "role", "deputy_card_no", "gender", "ethnicity")


def _evaluate(items: list[_Item], scope: set[int] | None, orgs: _Orgs, columns: dict[str, str]
              ) -> tuple[list[RowOutcome], dict[int, User]]:
    """Match rows to people and work out each row's outcome. Reads the database, writes nothing."""
    phones = {it.data["phone"] for it in items if it.data.get("phone")}
    cards = {it.data["deputy_card_no"] for it in items if it.data.get("deputy_card_no")}
    by_phone, by_card = _load_users(phones, cards)
    users: dict[int, User] = {}
    seen_phone: dict[str, int] = {}
    seen_card: dict[str, int] = {}
    seen_user: dict[int, int] = {}
    outcomes: list[RowOutcome] = []

    def col(f: str) -> str:
        return columns.get(f) or str(COLUMN_LABELS.get(f, f))

    for it in items:
        row, data, errors = it.row, dict(it.data), list(it.errors)

        def err(f: str, message: str, row=row, errors=errors) -> None:
            errors.append(CellError(row, col(f), message))

        phone, card = data.get("phone"), data.get("deputy_card_no")
        if phone:
            if phone in seen_phone:
                err("phone", _("与第%(row)s行的手机号重复", row=seen_phone[phone]))
            else:
                seen_phone[phone] = row
        if card:
            if card in seen_card:
                err("deputy_card_no", _("与第%(row)s行的代表证号重复", row=seen_card[card]))
            else:
                seen_card[card] = row
        if errors:
            outcomes.append(RowOutcome(row, "error", data, errors=errors))
            continue

        u_phone = by_phone.get(phone) if phone else None
        u_card = by_card.get(card) if card else None
        if u_phone is not None and u_card is not None and u_phone.id != u_card.id:
            err("phone", _("手机号与代表证号分别属于两个不同的已有账号，请核对"))
            outcomes.append(RowOutcome(row, "error", data, errors=errors))
            continue
        user = u_phone or u_card
        if user is None:
            data["org_name"] = orgs.name(data["org_id"])
            outcomes.append(RowOutcome(row, "new", data))
            continue

        matched_by = "phone" if u_phone is not None else "deputy_card_no"
        if user.id in seen_user:
            err(matched_by, _("与第%(row)s行是同一人（手机号或代表证号对应同一账号）", row=seen_user[user.id]))
        else:
            seen_user[user.id] = row
        if scope is not None and user.org_unit_id not in scope:
            err(matched_by, _("该%(field)s已被您管理范围之外的账号使用，请联系系统管理员",
                              field=COLUMN_LABELS[matched_by]))
        elif user.role not in IMPORT_ROLES:
            err(matched_by, _("该%(field)s属于%(role)s账号，不能通过花名册导入修改",
                              field=COLUMN_LABELS[matched_by], role=ROLE_LABELS.get(user.role, user.role)))
        if errors:
            outcomes.append(RowOutcome(row, "error", data, user_id=user.id, errors=errors))
            continue

        if it.keep_blank:
            for f in ("phone", "deputy_card_no"):
                if not data.get(f):
                    data[f] = getattr(user, f)
            for f in ("gender", "ethnicity"):
                if not data.get(f):
                    data[f] = getattr(user, f) or ""
        if not it.role_given:
            data["role"] = user.role
        data["org_name"] = orgs.name(data["org_id"])
        changes = {}
        for f in _COMPARED:
            old, new = getattr(user, "org_unit_id" if f == "org_id" else f), data[f]
            if (old or None) != (new or None):
                if f == "org_id":
                    changes["org"] = [orgs.name(old), orgs.name(new)]
                else:
                    changes[f] = [old, new]
        notes = [] if user.active else [_("该账号已停用：导入只更新资料，不会重新启用")]
        users[user.id] = user
        outcomes.append(RowOutcome(row, "updated" if changes else "unchanged", data,
                                   user_id=user.id, changes=changes, notes=notes))
    return outcomes, users


def build_preview(filename: str, data: bytes, importer) -> Preview:
    """Read ``data`` and report every row's outcome. Reads the database, writes nothing.

    ``importer`` is the person uploading (their scope limits the townships), or None for the
    command line (every township).
    """
    table = _read(filename, data)
    preview = Preview(filename=filename, outcomes=[], file_errors=list(table.file_errors))
    if preview.file_errors:
        return preview
    scope = _scope(importer)
    if scope is not None and not scope:
        preview.file_errors.append(_("您的账号没有可管理的乡镇，不能导入花名册"))
        return preview
    orgs = _Orgs(scope)
    items = []
    for row, raw in table.rows:
        data_, errors, role_given = _parse_row(row, raw, table.columns, orgs)
        formulas = table.cell_errors.get(row, [])
        if formulas:  # say "this is a formula", not also "this phone number is malformed"
            errors = formulas + [e for e in errors if e.column not in {f.column for f in formulas}]
        items.append(_Item(row, data_, errors, role_given))
    preview.outcomes, _users = _evaluate(items, scope, orgs, table.columns)
    return preview


# -- commit -----------------------------------------------------------------------------------

def _same(a: RowOutcome, b: RowOutcome) -> bool:
    def norm(d):
        return {k: (v or None) for k, v in d.items()}
    return (a.status == b.status and a.user_id == b.user_id and norm(a.data) == norm(b.data)
            and a.changes == b.changes)


def _free_usernames(bases: list[str]) -> dict[str, str]:
    """base username -> a username nobody has (base itself, or base-2, base-3, …)."""
    taken: set[str] = set()
    for chunk in _chunks(sorted(set(bases))):
        taken.update(db.session.scalars(select(User.username).where(User.username.in_(chunk))))
    out = {}
    for base in bases:
        name = base
        if base in taken:
            taken.update(db.session.scalars(
                select(User.username).where(User.username.like(base + "-%"))))
            n = 2
            while f"{base}-{n}" in taken:
                n += 1
            name = f"{base}-{n}"
        taken.add(name)
        out[base] = name
    return out


def _new_user(data: dict, username: str, org: OrgUnit | None = None) -> tuple[User, str]:
    user = User(username=username, name=data["name"], phone=data["phone"] or None,
                deputy_card_no=data["deputy_card_no"] or None, role=data["role"],
                org_unit_id=data["org_id"], gender=data["gender"] or "",
                ethnicity=data["ethnicity"] or "", active=True)
    if org is not None:
        user.org_unit = org
    code = user.issue_one_time_code(days=CODE_DAYS)
    user.must_change_password = True
    return user, code


def commit(preview: Preview, importer, *, only_valid: bool = False) -> CommitResult:
    """Write the previewed rows in one transaction (everything or nothing).

    Checks the rows again against the database first: if any outcome differs from the preview
    (someone changed a person meanwhile), raises :class:`RosterError` ("数据已变化，请重新预览").
    With ``only_valid`` the error rows are left out instead of refusing the whole file.
    Whatever else is pending in ``db.session`` is committed with it (or rolled back with it).

    The new accounts in ``created`` come back detached from the session with every column and
    ``org_unit`` loaded, so listing thousands of them after later commits costs no queries.
    """
    if preview.file_errors:
        raise RosterError(_("文件有错误，不能导入：%(errors)s", errors=_("；").join(preview.file_errors)))
    if not preview.ok and not only_valid:
        raise RosterError(_("有 %(n)s 行有错误，不能导入：请修改文件后重新上传", n=preview.counts["error"]))
    valid = [o for o in preview.outcomes if o.status != "error"]
    skipped = len(preview.outcomes) - len(valid)
    try:
        scope = _scope(importer)
        orgs = _Orgs(scope)
        items = []
        for o in valid:
            errors = []
            if o.data.get("org_id") not in orgs.allowed:
                errors.append(CellError(o.row, str(COLUMN_LABELS["org"]), _("乡镇已不可用")))
            items.append(_Item(o.row, dict(o.data), errors, role_given=True, keep_blank=False))
        fresh, users = _evaluate(items, scope, orgs, {})
        for before, now in zip(valid, fresh, strict=True):
            if not _same(before, now):
                reason = _("；").join(e.message for e in now.errors) or _(
                    "预览时为「%(before)s」，现在为「%(now)s」",
                    before=_STATUS_LABELS.get(before.status), now=_STATUS_LABELS.get(now.status))
                raise RosterError(_("%(stale)s（第%(row)s行：%(reason)s）", stale=STALE_MESSAGE,
                                    row=before.row, reason=reason))

        new = [o for o in fresh if o.status == "new"]
        org_ids = sorted({o.data["org_id"] for o in new})
        units = {org.id: org for chunk in _chunks(org_ids)
                 for org in db.session.scalars(select(OrgUnit).where(OrgUnit.id.in_(chunk)))}
        bases = [o.data["phone"] or f"card-{o.data['deputy_card_no']}" for o in new]
        usernames = _free_usernames(bases)
        created: list[tuple[User, str]] = []
        for i, (o, base) in enumerate(zip(new, bases, strict=True), 1):
            user, code = _new_user(o.data, usernames[base], units.get(o.data["org_id"]))
            db.session.add(user)
            created.append((user, code))
            if i % FLUSH_EVERY == 0:
                db.session.flush()
        updated = 0
        for o in fresh:
            if o.status != "updated":
                continue
            user = users[o.user_id]
            for f in _COMPARED:
                value = o.data[f]
                if f in ("phone", "deputy_card_no"):
                    value = value or None
                elif f in ("gender", "ethnicity"):
                    value = value or ""
                setattr(user, "org_unit_id" if f == "org_id" else f, value)
            updated += 1
        db.session.flush()
        # The rows are written (in this transaction); detach the new accounts so the commit
        # does not expire what they hold: the caller may list thousands of them afterwards.
        for user, _code in created:
            db.session.expunge(user)
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise RosterError(STALE_MESSAGE + parens(_("账号的手机号、代表证号或用户名与他人重复"))) from exc
    except BaseException:
        db.session.rollback()
        raise
    unchanged = sum(1 for o in fresh if o.status == "unchanged")
    return CommitResult(created=created, updated=updated, unchanged=unchanged, skipped=skipped)


_STATUS_LABELS = {"new": _l("新建"), "updated": _l("更新"), "unchanged": _l("未变"), "error": _l("错误")}


# -- export -----------------------------------------------------------------------------------

def export_rows(users: Iterable[User]) -> list[dict]:
    """One dict per person with the canonical fields; role and gender in the reader's language
    (the import reads both languages), org as the unit's name."""
    users = list(users)
    org_ids = sorted({u.org_unit_id for u in users if u.org_unit_id is not None})
    names: dict[int, str] = {}
    for chunk in _chunks(org_ids):
        for org_id, name in db.session.execute(
                select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(chunk))):
            names[org_id] = name
    # A township whose name another township shares (two 城关镇) is written "甲县/城关镇",
    # which the import reads back (a bare "城关镇" would be refused as ambiguous).
    shared: dict[str, int] = {}
    for (name,) in db.session.execute(select(OrgUnit.name).where(OrgUnit.kind == "township")):
        shared[_org_key(name)] = shared.get(_org_key(name), 0) + 1
    ambiguous = [i for i, n in names.items() if shared.get(_org_key(n), 0) > 1]
    for chunk in _chunks(ambiguous):
        parent = OrgUnit.__table__.alias("parent")
        for org_id, name, parent_name in db.session.execute(
                select(OrgUnit.id, OrgUnit.name, parent.c.name)
                .join(parent, parent.c.id == OrgUnit.parent_id).where(OrgUnit.id.in_(chunk))):
            names[org_id] = f"{parent_name}/{name}"
    return [{
        "name": u.name or "",
        "phone": u.phone or "",
        "org": names.get(u.org_unit_id, "") if u.org_unit_id is not None else "",
        "role": str(ROLE_LABELS.get(u.role, u.role or "")),
        "deputy_card_no": u.deputy_card_no or "",
        "gender": str(GENDER_LABELS.get(u.gender, u.gender or "")),
        "ethnicity": u.ethnicity or "",
    } for u in users]


def to_csv(rows: Iterable[dict]) -> bytes:
    """CSV for Excel: UTF-8 with BOM, a header row in the reader's language, CRLF line ends,
    formulas neutralised."""
    return csv_bytes([str(label) for _f, label in COLUMNS],
                     ([r.get(f, "") for f, _label in COLUMNS] for r in rows))


def to_csv_plain(header: Sequence[str], rows: Iterable[Sequence]) -> bytes:
    """Any table as the same Excel-friendly CSV (e.g. the new accounts' one-time codes)."""
    return csv_bytes(header, rows)


def to_xlsx(rows: Iterable[dict]) -> bytes:
    """An .xlsx with a header row in the reader's language; every value is a text cell,
    formulas neutralised."""
    widths = {"name": 12, "phone": 16, "org": 18, "role": 18, "deputy_card_no": 18,
              "gender": 6, "ethnicity": 10}
    return xlsx_bytes(_("花名册"), [str(label) for _f, label in COLUMNS],
                      ([str(r.get(f, "") or "") for f, _label in COLUMNS] for r in rows),
                      [widths.get(f, 12) for f, _label in COLUMNS])
