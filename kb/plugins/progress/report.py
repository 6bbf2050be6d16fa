"""The organisation report: rows, columns (from every plugin), filters, sort, chart, exports."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from sqlalchemy import select

from kb import db, plugin_manager
from kb.i18n import colon
from kb.models import OrgUnit, User
from kb.pluginhost import collect
from kb.records import ReportColumn, ReportScope

from . import rules, service

ROLE_LABELS = {"deputy": _l("人大代表"), "presidium": _l("主席团成员"), "chair": _l("人大主席/副主席"),
               "secretary": _l("人大秘书")}


def fmt(value: Any, kind: str) -> str:
    """How a value shows on screen and in the CSV (the .xlsx keeps numbers as numbers)."""
    if value is None or value == "":
        return "—"
    if kind == "percent":
        return f"{float(value):.1f}%"
    if kind == "number":
        v = round(float(value), 2)
        return str(int(v)) if v == int(v) else f"{v:.2f}".rstrip("0").rstrip(".")
    return str(value)


# -- this plugin's columns ----------------------------------------------------------------------

def _rate(hours, target):
    if not target:
        return None
    return min(100.0, round(float(hours) / float(target) * 100, 1))


def _person(field_fn):
    def values(scope: ReportScope) -> dict[int, Any]:
        stats = service.person_stats(tuple(scope.row_ids), scope.year)
        return {rid: field_fn(stats[rid]) if rid in stats else None for rid in scope.row_ids}
    return values


def _group(field_fn, loader):
    def values(scope: ReportScope) -> dict[int, Any]:
        stats = loader(tuple(scope.row_ids), scope.year)
        return {rid: field_fn(stats.get(rid)) for rid in scope.row_ids}
    return values


def _g(name):
    return lambda s: (s or {}).get(name) or 0


def group_columns(loader) -> list[ReportColumn]:
    return [
        ReportColumn("progress_people", _("人数"), _group(_g("people"), loader), order=10),
        ReportColumn("progress_hours_avg", _("人均学时"),
                     _group(lambda s: round(float(s["hours"] or 0) / s["people"], 2)
                            if s and s["people"] else 0, loader), order=11),
        ReportColumn("progress_met", _("达标人数"), _group(_g("met"), loader), order=12),
        ReportColumn("progress_rate", _("达标率"),
                     _group(lambda s: round(s["met"] * 100.0 / s["people"], 1)
                            if s and s["people"] else None, loader), kind="percent", order=13),
        ReportColumn("progress_incomplete", _("未完成人数"), _group(_g("incomplete"), loader),
                     order=14),
        ReportColumn("progress_overdue", _("必修逾期人数"), _group(_g("req_overdue"), loader),
                     order=15),
    ]


def person_columns() -> list[ReportColumn]:
    return [
        ReportColumn("progress_hours", _("本年学时"), _person(lambda s: round(float(s["hours"]), 2)),
                     order=10),
        ReportColumn("progress_target", _("年度目标"), _person(lambda s: float(s["target"])), order=11),
        ReportColumn("progress_rate", _("完成率"), _person(lambda s: _rate(s["hours"], s["target"])),
                     kind="percent", order=12),
        ReportColumn("progress_required", _("必修完成"),
                     _person(lambda s: f"{s['req_done']}/{s['req_total']}" if s["req_total"] else "—"),
                     kind="text", order=13),
        ReportColumn("progress_overdue", _("必修逾期"), _person(lambda s: s["req_overdue"]), order=14),
    ]


def columns_for(scope: ReportScope) -> list[ReportColumn]:
    if scope.level == "person":
        return person_columns()
    if scope.level == "township":
        return group_columns(service.township_stats)
    if scope.level == "county":
        return group_columns(service.county_stats)
    return []


# -- building the report ------------------------------------------------------------------------

@dataclass
class Row:
    id: int
    name: str
    link: str | None
    role: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    incomplete: bool = False


@dataclass
class Report:
    org: OrgUnit
    level: str  # person | township | county
    year: int
    base: list[str]
    columns: list[ReportColumn]
    rows: list[Row]
    sort: str
    desc: bool

    def header(self) -> list[str]:
        return self.base + [str(c.label) for c in self.columns]

    def cells(self, row: Row) -> list[str]:
        """The row as it shows on screen (and in the CSV)."""
        base = [row.name] + ([str(ROLE_LABELS.get(row.role, row.role))] if self.level == "person" else [])
        return base + [fmt(row.values.get(c.key), c.kind) for c in self.columns]

    def raw(self, row: Row) -> list[Any]:
        base = [row.name] + ([str(ROLE_LABELS.get(row.role, row.role))] if self.level == "person" else [])
        return base + [row.values.get(c.key) for c in self.columns]


def level_of(org: OrgUnit) -> str:
    return {"township": "person", "county": "township"}.get(org.kind, "county")


def build(org: OrgUnit, year: int, viewer_id: int, *, q: str = "", role: str = "",
          status: str = "", sort: str = "", desc: bool = False, url_for_row=None) -> Report:
    level = level_of(org)
    if level == "person":
        items = db.session.execute(
            select(User.id, User.name, User.role).where(
                User.org_unit_id == org.id, User.active.is_(True),
                User.role.in_(rules.LEARNER_ROLES)).order_by(User.role, User.name, User.id)).all()
        rows = [Row(id=i.id, name=i.name, role=i.role, link=url_for_row(level, i.id)) for i in items]
        base = [_("姓名"), _("职务")]
    else:
        kind = "township" if level == "township" else "county"
        items = db.session.execute(
            select(OrgUnit.id, OrgUnit.name).where(
                OrgUnit.path.startswith(org.path), OrgUnit.kind == kind,
                OrgUnit.is_active.is_(True)).order_by(OrgUnit.path)).all()
        rows = [Row(id=i.id, name=i.name, link=url_for_row(level, i.id)) for i in items]
        base = [_("乡镇（街道）") if level == "township" else _("县（区）")]
    row_ids = tuple(r.id for r in rows)
    scope = ReportScope(level=level, row_ids=row_ids, year=year, viewer_id=viewer_id)
    columns = sorted(collect(plugin_manager(), "kb_report_columns", scope=scope),
                     key=lambda c: (c.order, c.key))
    for c in columns:
        values = c.values(scope) or {}
        for r in rows:
            r.values[c.key] = values.get(r.id)
    # Who is "not finished": below the yearly target or with required courses still open.
    if level == "person":
        stats = service.person_stats(row_ids, year)
        for r in rows:
            s = stats.get(r.id)
            r.incomplete = s is None or float(s["hours"]) < float(s["target"]) \
                or s["req_done"] < s["req_total"]
    else:
        stats = (service.township_stats if level == "township" else service.county_stats)(row_ids, year)
        for r in rows:
            r.incomplete = bool((stats.get(r.id) or {}).get("incomplete"))
    if q:
        rows = [r for r in rows if q in r.name]
    if role and level == "person":
        rows = [r for r in rows if r.role == role]
    if status == "incomplete":
        rows = [r for r in rows if r.incomplete]
    keys = {c.key: c for c in columns}
    if sort in keys:
        col = keys[sort]

        def sort_key(r, col=col):
            v = r.values.get(col.key)
            if col.kind == "text":
                return (v is None, str(v or ""))
            return (v is None, float(v) if v is not None else 0.0)
        rows.sort(key=sort_key, reverse=desc)
        if desc:  # keep rows without a value last
            rows.sort(key=lambda r: r.values.get(col.key) is None)
    elif sort == "name":
        rows.sort(key=lambda r: r.name, reverse=desc)
    else:
        sort = ""
    return Report(org=org, level=level, year=year, base=base, columns=columns, rows=rows,
                  sort=sort, desc=desc)


# -- chart and exports --------------------------------------------------------------------------

def chart(report: Report) -> Markup:
    """A horizontal bar chart of the rate column (达标率 / 完成率) as inline SVG (no script)."""
    col = next((c for c in report.columns if c.key == "progress_rate"), None)
    if col is None or not report.rows:
        return Markup("")
    rows = report.rows[:60]
    bar_h, gap, label_w, width = 20, 6, 84, 360
    height = len(rows) * (bar_h + gap) + gap
    parts = [f'<svg class="progress-chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(str(col.label))}" xmlns="http://www.w3.org/2000/svg">']
    span = width - label_w - 52
    for i, r in enumerate(rows):
        v = r.values.get(col.key)
        y = gap + i * (bar_h + gap)
        w = 0 if v is None else max(0.0, min(100.0, float(v))) / 100 * span
        cls = "bar done" if v is not None and float(v) >= 100 else "bar"
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_h * 0.7:.0f}" text-anchor="end" '
                     f'class="label">{escape(r.name[:6])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" class="{cls}">'
                     f'<title>{escape(colon(r.name))}{escape(fmt(v, col.kind))}</title></rect>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h * 0.7:.0f}" class="value">'
                     f'{escape(fmt(v, col.kind))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def to_csv(report: Report) -> bytes:
    from kb.exports import csv_bytes

    return csv_bytes(report.header(), (report.cells(r) for r in report.rows))


def to_xlsx(report: Report) -> bytes:
    """Same columns as the screen; numbers stay numbers, text is neutralised against formulas."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font

    from kb.exports import neutralize

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(_("学习情况"))
    ws.freeze_panes = "A2"
    kinds = ["text"] * len(report.base) + [c.kind for c in report.columns]

    def cell(value, kind, bold=False):
        if kind in ("number", "percent") and isinstance(value, (int, float)):
            c = WriteOnlyCell(ws, value=(round(float(value) / 100, 4) if kind == "percent"
                                         else round(float(value), 2)))
            if kind == "percent":
                c.number_format = "0.0%"
        else:
            text = "—" if value is None or value == "" else str(value)
            c = WriteOnlyCell(ws, value=ILLEGAL_CHARACTERS_RE.sub("", neutralize(text)))
            c.data_type = "s"
        if bold:
            c.font = Font(bold=True)
        return c

    ws.append([cell(h, "text", bold=True) for h in report.header()])
    for r in report.rows:
        ws.append([cell(v, k) for v, k in zip(report.raw(r), kinds, strict=True)])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


__all__ = ["Report", "Row", "build", "chart", "columns_for", "fmt", "to_csv", "to_xlsx"]
