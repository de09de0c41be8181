"""Lists as files: every exportable list (scorecard, workstreams, decisions, audit log) hands this module its column
titles and rows of plain Python values, and gets CSV or Excel back. One place decides how a value is written.

Values keep their type: numbers stay numbers and dates stay dates in Excel (so a board member can sort and sum), and
aware datetimes are shown on the organization's wall clock, as on its pages (Excel has no time zones).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, tzinfo

from django.http import HttpRequest, HttpResponse

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
MAX_WIDTH = 60  # characters: a long reason wraps in the cell rather than making a column a screen wide


def requested_format(request: HttpRequest) -> str | None:
    """The `?format=` of an export link, None for the page itself."""
    fmt = request.GET.get("format", "")
    return fmt if fmt in FORMATS else None


def _local(value: object, tz: tzinfo) -> object:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(tz).replace(tzinfo=None)
    return value


def as_csv(columns: Sequence[str], rows: Iterable[Sequence[object]], *, tz: tzinfo) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else _csv_text(_local(v, tz)) for v in row])
    # A byte-order mark, so that Excel opening the CSV reads it as UTF-8 (names with accents).
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _csv_text(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") and not _is_number(value):
        # A cell starting like a formula would run as one in a spreadsheet (CSV injection): keep it text.
        return "'" + value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def as_xlsx(columns: Sequence[str], rows: Iterable[Sequence[object]], *, tz: tzinfo, title: str = "Export") -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    # Excel refuses these characters and more than 31 of them in a sheet name (a scorecard's name may have them).
    sheet.title = re.sub(r"[\\/?*\[\]:]", " ", title)[:31].strip() or "Export"
    sheet.append(list(columns))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    widths = [len(c) for c in columns]
    for row in rows:
        values = [_local(v, tz) for v in row]
        sheet.append(values)
        for i, cell in enumerate(sheet[sheet.max_row]):
            if isinstance(cell.value, datetime):
                cell.number_format = "yyyy-mm-dd hh:mm"
            elif isinstance(cell.value, date):
                cell.number_format = "yyyy-mm-dd"
            widths[i] = max(widths[i], len(_shown(cell.value)))
    for i, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(i)].width = min(width + 2, MAX_WIDTH)
    sheet.freeze_panes = "A2"  # the header stays in view while scrolling
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _shown(value: object) -> str:
    if isinstance(value, datetime):
        return "2026-01-01 00:00"
    return "" if value is None else str(value)


def export_response(
    *, fmt: str, name: str, columns: Sequence[str], rows: Iterable[Sequence[object]], tz: tzinfo
) -> HttpResponse:
    """The download of `rows` as `fmt` ("csv" or "xlsx"), saved as `name`.csv or `name`.xlsx."""
    body = as_xlsx(columns, rows, tz=tz, title=name) if fmt == "xlsx" else as_csv(columns, rows, tz=tz)
    response = HttpResponse(body, content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response
