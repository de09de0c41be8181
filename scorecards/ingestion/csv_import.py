"""CSV files of measurements (`kpi,at,value`): read here, checked by the one `Checker`, stored all-or-nothing.

Small files are imported inside the upload request or by the command; large ones by a worker
(`scorecards.tasks.import_measurements`), which commits its progress to the job row as it goes so that the job
page, on another connection, can show it.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from celery import current_app
from django.db import transaction
from django.utils import timezone

from governance.models import Organization, User
from governance.services.audit import audit_log
from scorecards.ingestion.checker import Checker, Problem
from scorecards.ingestion.store import measurements_store
from scorecards.models import ImportJob

COLUMNS = ("kpi", "at", "value")
CHUNK = 5000  # rows per KPI lookup and per progress update
MAX_PROBLEMS = 1000  # kept in detail; the rest are only counted
UNFINISHED = [ImportJob.State.QUEUED, ImportJob.State.CHECKING, ImportJob.State.STORING]


class UnreadableFile(Exception):
    """Nothing in the file can be checked (not UTF-8, no header line)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # where the row starts in the file; the header is line 1
    kpi: str
    at: str
    value: float | str  # a string when it is no number: the Checker rejects it with its usual message


@dataclass
class Checked:
    rows: list = field(default_factory=list)  # checked rows for measurements_store
    problems: list[Problem] = field(default_factory=list)  # the first MAX_PROBLEMS
    problem_count: int = 0
    count: int = 0  # data rows read

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def note(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(problem)
            self.problem_count += 1


def format_problem(line: int | None, field: str, message: str) -> str:
    """`line 70001: value: must be a finite number`, as the command prints it."""
    return ": ".join(part for part in [f"line {line}" if line else "", field, message] if part)


def _decode(content: bytes) -> str:
    content = content.removeprefix(codecs.BOM_UTF8)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as e:
        before = content[: e.start]
        # Physical lines as the csv reader counts them: \n, \r\n and a lone \r each end one.
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        message = f"is not UTF-8 text (byte 0x{content[e.start]:02X}); save the file as CSV UTF-8 and try again"
        raise UnreadableFile(line, message) from None


def _columns(line: int, fields: list[str]) -> list[int]:
    """The position of kpi, at and value in the header row, which may name them in any order and case."""
    names = [f.strip().lower() for f in fields]
    if not set(names) & set(COLUMNS):
        found = ",".join(fields)[:80]
        raise UnreadableFile(line, f'the first line must be the header kpi,at,value (in any order), not "{found}"')
    unknown = [n for n in names if n not in COLUMNS]
    missing = [c for c in COLUMNS if c not in names]
    twice = sorted({n for n in names if n in COLUMNS and names.count(n) > 1})
    if unknown or missing or twice:
        errors = [f'unknown column "{n[:40]}"' for n in unknown]
        errors += [f'missing column "{c}"' for c in missing]
        errors += [f'column "{c}" appears twice' for c in twice]
        raise UnreadableFile(line, f"{'; '.join(errors)}: the columns are kpi, at and value")
    return [names.index(c) for c in COLUMNS]


def _number(text: str, decimal_comma: bool) -> float | str:
    if decimal_comma:
        text = text.replace(",", ".")  # "1,5"; with thousands separators ("1.234,5") it stays no number
    try:
        return float(text)
    except ValueError:
        return text


def csv_rows(content: bytes) -> Iterator[Row | Problem]:
    """Every data row with its line number, or the problem of a line that is not a row.

    Raises UnreadableFile before the first row when the file cannot be read at all.
    """
    text = _decode(content)
    first = next((line for line in text.splitlines() if line.strip()), "")
    # A spreadsheet saved in a locale with a decimal comma separates fields with semicolons.
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = None
    end = 0
    try:
        for fields in reader:
            line, end = end + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if columns is None:
                columns = _columns(line, fields)
            elif len(fields) != len(COLUMNS):
                hint = "; quote values that contain a comma" if delimiter == "," and len(fields) > 3 else ""
                yield Problem(line, "", f"has {len(fields)} fields, expected 3 (kpi, at, value){hint}")
            else:
                kpi, at, value = (fields[i].strip() for i in columns)
                yield Row(line, kpi, at, _number(value, decimal_comma=delimiter == ";"))
    except csv.Error as e:
        # The reader cannot go on after this (e.g. a field over 128 KiB: a binary file renamed .csv).
        yield Problem(end + 1, "", f"cannot be read as CSV: {e}")
    if columns is None:
        raise UnreadableFile(1, "the file is empty; the first line must be the header kpi,at,value")


def count_rows(content: bytes) -> int:
    """Data rows, for the progress bar and the choice to import inside the request: a cheap count of non-blank
    lines, exact for every file that can be imported (a row spread over lines is rejected anyway)."""
    return max(sum(1 for line in content.splitlines() if line.strip(b' \t,;"')) - 1, 0)


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def csv_check(*, org: Organization, content: bytes, progress: Callable[[int], object] | None = None) -> Checked:
    """Checks every row of a CSV file; `progress(rows_read)` is called after each chunk."""
    checker = Checker(org, unit="line")
    checked = Checked()
    try:
        for chunk in _chunks(csv_rows(content), CHUNK):
            checker.resolve(row.kpi for row in chunk if isinstance(row, Row))
            for row in chunk:
                if isinstance(row, Row):
                    checker.add(row.line, row.kpi, row.at, row.value)
                else:
                    checker.problems.append(row)
            # Only the first problems are kept: a file in the wrong format has one per line.
            checked.note(checker.problems)
            checker.problems.clear()
            checked.count += len(chunk)
            if progress is not None:
                progress(checked.count)
    except UnreadableFile as e:
        checked.note([Problem(e.line, "", e.message)])
    checked.rows = checker.rows if checked.ok else []
    return checked


@transaction.atomic
def measurement_import_create(*, org: Organization, actor: User | None, filename: str, content: bytes) -> ImportJob:
    job = ImportJob.objects.create(
        organization=org,
        created_by=actor,
        filename=filename[:255],
        content=content,
        rows_total=count_rows(content),
    )
    audit_log(
        org=org,
        actor=actor,
        verb="measurement_import.created",
        obj=job,
        after={"filename": job.filename, "bytes": len(content), "rows": job.rows_total},
    )
    return job


def measurement_import_queue(*, job: ImportJob) -> None:
    """Hands a large file to a worker once the job is committed."""
    # By name: scorecards.tasks imports this module (ScorecardsConfig.ready registers the tasks).
    transaction.on_commit(
        lambda: current_app.tasks["scorecards.tasks.import_measurements"].delay(job.organization_id, job.pk)
    )


def measurement_import_run(*, job: ImportJob) -> ImportJob:
    """Checks the job's file and stores it, or rejects it with its problems; a finished job is left as it is.

    Not atomic as a whole on purpose: progress commits as it goes, so that the job page sees it.
    """
    # A redelivered task (acks_late) finds its job finished and stops. An unfinished one starts over, which is
    # safe: nothing is stored before every row has been checked, and then in one transaction with the result.
    started = ImportJob.objects.filter(pk=job.pk, state__in=UNFINISHED)
    if not started.update(state=ImportJob.State.CHECKING, rows_checked=0):
        job.refresh_from_db()
        return job
    content = ImportJob.objects.filter(pk=job.pk).values_list("content", flat=True).get()
    checked = csv_check(
        org=job.organization,
        content=bytes(content),
        progress=lambda n: ImportJob.objects.filter(pk=job.pk).update(rows_checked=n),
    )
    if checked.ok:
        ImportJob.objects.filter(pk=job.pk).update(state=ImportJob.State.STORING, rows_checked=checked.count)
    with transaction.atomic():
        # Of two runs of one job (a redelivery while the first still runs) the second waits for this lock,
        # then finds the job finished: the file is stored once.
        if not started.select_for_update().exists():
            job.refresh_from_db()
            return job
        job.accepted = measurements_store(org=job.organization, rows=checked.rows, source="csv")
        job.state = ImportJob.State.DONE if checked.ok else ImportJob.State.FAILED
        job.rows_total = job.rows_checked = checked.count
        job.errors = [{"line": p.where, "field": p.field, "message": p.message} for p in checked.problems]
        job.error_count = checked.problem_count
        job.content = b""  # the file is no longer needed and may be large; the counts and problems stay
        job.finished_at = timezone.now()
        job.save(
            update_fields=[
                "accepted",
                "state",
                "rows_total",
                "rows_checked",
                "errors",
                "error_count",
                "content",
                "finished_at",
            ]
        )
        audit_log(
            org=job.organization,
            actor=job.created_by,
            verb="measurement_import.finished",
            obj=job,
            after={"state": job.state, "rows": job.rows_total, "accepted": job.accepted, "problems": job.error_count},
        )
    return job


def measurement_import_fail(*, job: ImportJob, message: str) -> ImportJob:
    """Records an unfinished job as rejected when its run broke off (e.g. the time limit), so that its page
    stops waiting; the run's own transaction has rolled back, so nothing of the file is stored."""
    stopped = ImportJob.objects.filter(pk=job.pk, state__in=UNFINISHED).update(
        state=ImportJob.State.FAILED,
        errors=[{"line": None, "field": "", "message": message}],
        error_count=1,
        content=b"",
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    if stopped:
        audit_log(
            org=job.organization,
            actor=job.created_by,
            verb="measurement_import.finished",
            obj=job,
            after={"state": job.state, "rows": job.rows_total, "accepted": 0, "problems": 1},
        )
    return job
