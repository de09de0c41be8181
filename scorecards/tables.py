"""Tables as people keep them: CSV or TSV text and .xlsx workbooks, read into numbered lines of fields and mapped
by their header. The CSV import and the spreadsheet source both read through here (imports nothing of scorecards,
so that connectors and ingestion can both use it)."""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

WORKBOOK_MAGIC = b"PK\x03\x04"  # an .xlsx file is a zip archive


class UnreadableFile(Exception):
    """Nothing in the file can be checked (not UTF-8, no header line, not a workbook)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # where the line starts in the file (the header is line 1), or the sheet's row number
    fields: list  # text for CSV and TSV; a workbook's cells as they are typed (number, datetime, text, None)


@dataclass(frozen=True, slots=True)
class BadLine:
    number: int
    message: str


@dataclass
class Table:
    lines: Iterator[Line | BadLine]  # the non-blank lines, the header first
    delimiter: str = ","  # "" for a workbook
    workbook: bool = False

    @property
    def decimal_comma(self) -> bool:
        # A spreadsheet saved in a locale with a decimal comma separates fields with semicolons.
        return self.delimiter == ";"


def is_workbook(content: bytes) -> bool:
    return content.startswith(WORKBOOK_MAGIC)


def read_table(content: bytes, sheet: str = "") -> Table:
    """A workbook's sheet (the first one unless named) or CSV/TSV text; raises UnreadableFile when it cannot be
    read at all."""
    return read_workbook(content, sheet) if is_workbook(content) else read_text(content)


def decode(content: bytes) -> str:
    content = content.removeprefix(codecs.BOM_UTF8)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as e:
        before = content[: e.start]
        # Physical lines as the csv reader counts them: \n, \r\n and a lone \r each end one.
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        message = f"is not UTF-8 text (byte 0x{content[e.start]:02X}); save the file as CSV UTF-8 and try again"
        raise UnreadableFile(line, message) from None


def _delimiter(first: str) -> str:
    counts = {d: first.count(d) for d in ("\t", ";", ",")}
    return max(counts, key=lambda d: (counts[d], d == ","))  # a tie (no separator at all) reads as CSV


def read_text(content: bytes) -> Table:
    text = decode(content)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = _delimiter(first)
    return Table(_text_lines(text, delimiter), delimiter)


def _text_lines(text: str, delimiter: str) -> Iterator[Line | BadLine]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    end = 0
    try:
        for fields in reader:
            line, end = end + 1, reader.line_num
            if any(f.strip() for f in fields):
                yield Line(line, fields)
    except csv.Error as e:
        # The reader cannot go on after this (e.g. a field over 128 KiB: a binary file renamed .csv).
        yield BadLine(end + 1, f"cannot be read as CSV: {e}")


def read_workbook(content: bytes, sheet: str = "") -> Table:
    # openpyxl is imported here only: the import page and the pulls without workbooks never need it.
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError):
        raise UnreadableFile(1, "is not an Excel workbook (.xlsx); save it as .xlsx or as CSV UTF-8") from None
    if sheet and sheet not in book.sheetnames:
        names = ", ".join(f'"{name}"' for name in book.sheetnames)
        raise UnreadableFile(1, f'the workbook has no sheet "{sheet[:100]}" (its sheets: {names})')
    if not book.sheetnames:
        raise UnreadableFile(1, "the workbook has no sheet")
    return Table(_sheet_lines(book[sheet] if sheet else book.worksheets[0]), "", workbook=True)


def _sheet_lines(sheet) -> Iterator[Line]:
    for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
        fields = [cell.strip() if isinstance(cell, str) else cell for cell in cells]
        while fields and fields[-1] in (None, ""):  # a formatted but empty cell is no field
            fields.pop()
        if fields:
            yield Line(number, fields)


def header(line: Line, wanted: Sequence[str], *, only: bool) -> dict[str, int]:
    """Where each of the `wanted` columns is in the header line (any order and case); `only`: no other column."""
    names = [str(f if f is not None else "").strip().lower() for f in line.fields]
    wanted_lower = {w.lower(): w for w in wanted}
    if only and not set(names) & set(wanted_lower):
        found = ",".join(str(f) for f in line.fields)[:80]
        raise UnreadableFile(
            line.number, f'the first line must be the header {",".join(wanted)} (in any order), not "{found}"'
        )
    unknown = [n for n in names if n not in wanted_lower] if only else []
    missing = [w for w in wanted if w.lower() not in names]
    twice = sorted({wanted_lower[n] for n in names if n in wanted_lower and names.count(n) > 1})
    if unknown or missing or twice:
        errors = [f'unknown column "{n[:40]}"' for n in unknown]
        errors += [f'missing column "{c}"' for c in missing]
        errors += [f'column "{c}" appears twice' for c in twice]
        after = (
            f"the columns are {', '.join(wanted[:-1])} and {wanted[-1]}"
            if only
            else f"the header has {', '.join(names)[:200]}"
        )
        raise UnreadableFile(line.number, f"{'; '.join(errors)}: {after}")
    return {w: names.index(w.lower()) for w in wanted}


def number(value: object, decimal_comma: bool) -> object:
    """A text field as a number where it is one; anything else as it is, for the Checker to judge."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if decimal_comma:
        text = text.replace(",", ".")  # "1,5"; with thousands separators ("1.234,5") it stays no number
    try:
        return float(text)
    except ValueError:
        return value


def text(value: object) -> str:
    return "" if value is None else str(value).strip()
