"""Spreadsheet exports shared by the core and plugins: Excel-friendly CSV and .xlsx.

Every text value is neutralised against formula injection (a leading ``=``, ``+``, ``-`` or ``@``
gets a ``'``) and written as text; numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value) -> str:
    """Text that a spreadsheet will show as text: a leading =, +, -, @ gets a ``'`` before it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def unneutralize(text: str) -> str:
    """Undo :func:`neutralize` when reading an export back: ``'=1+2`` → ``=1+2``."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence]) -> bytes:
    """CSV for Excel: UTF-8 with BOM, CRLF line ends, every value neutralised."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([neutralize(h) for h in header])
    for row in rows:
        writer.writerow([neutralize(v) for v in row])
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def xlsx_bytes(sheet: str, header: Sequence[str], rows: Iterable[Sequence],
               widths: Sequence[int] | None = None) -> bytes:
    """An .xlsx with a bold, frozen header row; text as text cells, numbers as numbers."""
    return workbook_bytes([(sheet, header, rows, widths)])


def sheet_title(title: str, taken: set[str]) -> str:
    """A valid, unique worksheet name for ``title``: no ``[]:*?/\\``, at most 31 characters."""
    base = "".join(" " if ch in "[]:*?/\\" else ch for ch in title).strip().strip("'") or "Sheet"
    name, n = base[:31], 1
    while name.lower() in {t.lower() for t in taken}:
        n += 1
        suffix = f" ({n})"
        name = base[:31 - len(suffix)] + suffix
    taken.add(name)
    return name


def workbook_bytes(sheets: Iterable[tuple]) -> bytes:
    """An .xlsx with one sheet per ``(name, header, rows[, widths])``, each like :func:`xlsx_bytes`.

    Sheet names are made valid and unique with :func:`sheet_title`.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    taken: set[str] = set()
    for sheet, header, rows, *rest in sheets:
        widths = rest[0] if rest else None
        ws = wb.create_sheet(sheet_title(sheet, taken))
        for i, width in enumerate(widths or ()):
            ws.column_dimensions[get_column_letter(i + 1)].width = width
        ws.freeze_panes = "A2"

        def cell(value, bold=False, ws=ws):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                c = WriteOnlyCell(ws, value=value)
            else:
                text = ILLEGAL_CHARACTERS_RE.sub("", neutralize(value))
                c = WriteOnlyCell(ws, value=text or None)
                if text:
                    c.data_type = "s"
                c.number_format = "@"
            if bold:
                c.font = Font(bold=True)
            return c

        ws.append([cell(h, bold=True) for h in header])
        for row in rows:
            ws.append([cell(v) for v in row])
    if not taken:
        wb.create_sheet("Sheet")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
