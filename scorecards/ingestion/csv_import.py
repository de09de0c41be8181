"""CSV, TSV and .xlsx files of measurements (`kpi,at,value`): read here (through scorecards.tables), checked by
the one `Checker`, stored all-or-nothing.

Small files are imported inside the upload request or by the command; large ones by a worker
(`scorecards.tasks.import_measurements`), which commits its progress to the job row as it goes so that the job
page, on another connection, can show it.
"""

from __future__ import annotations

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
from scorecards.tables import BadLine, UnreadableFile, header, is_workbook, number, read_table, text

COLUMNS = ("kpi", "at", "value")
CHUNK = 5000  # rows per KPI lookup and per progress update
MAX_PROBLEMS = 1000  # kept in detail; the rest are only counted
UNFINISHED = [ImportJob.State.QUEUED, ImportJob.State.CHECKING, ImportJob.State.STORING]


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # where the row starts in the file (the header is line 1), or the sheet's row number
    kpi: str
    at: object  # text, or a workbook's date cell
    value: object  # a number, or what the file holds instead: the Checker rejects it with its usual message


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


def csv_rows(content: bytes, sheet: str = "") -> Iterator[Row | Problem]:
    """Every data row of a CSV/TSV file or a workbook's sheet with its line number, or the problem of a line that
    is not a row.

    Raises UnreadableFile before the first row when the file cannot be read at all.
    """
    table = read_table(content, sheet)
    columns = None
    for line in table.lines:
        if isinstance(line, BadLine):
            yield Problem(line.number, "", line.message)
            continue
        fields = line.fields
        if columns is None:
            columns = header(line, COLUMNS, only=True)
            continue
        if table.workbook:  # a sheet's empty cells at the end of a row are no fields
            fields = fields + [None] * (len(COLUMNS) - len(fields))
        if len(fields) != len(COLUMNS):
            hint = "; quote values that contain a comma" if table.delimiter == "," and len(fields) > 3 else ""
            yield Problem(line.number, "", f"has {len(fields)} fields, expected 3 (kpi, at, value){hint}")
        else:
            kpi, at, value = (fields[columns[c]] for c in COLUMNS)
            yield Row(
                line.number, text(kpi), at.strip() if isinstance(at, str) else at, number(value, table.decimal_comma)
            )
    if columns is None:
        raise UnreadableFile(1, "the file is empty; the first line must be the header kpi,at,value")


def count_rows(content: bytes, sheet: str = "") -> int:
    """Data rows, for the progress bar and the choice to import inside the request: a cheap count of non-blank
    lines, exact for every file that can be imported (a row spread over lines is rejected anyway)."""
    if is_workbook(content):
        try:
            return max(sum(1 for _ in read_table(content, sheet).lines) - 1, 0)
        except UnreadableFile:
            return 0  # the import says why
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


def csv_check(
    *, org: Organization, content: bytes, sheet: str = "", progress: Callable[[int], object] | None = None
) -> Checked:
    """Checks every row of a CSV file or a workbook's sheet; `progress(rows_read)` is called after each chunk."""
    # A workbook's dates have no zone (Excel has none): they are the organization's. CSV text must name its zone.
    checker = Checker(org, unit="line", naive_tz=org.tzinfo if is_workbook(content) else None)
    checked = Checked()
    try:
        for chunk in _chunks(csv_rows(content, sheet), CHUNK):
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
def measurement_import_create(
    *, org: Organization, actor: User | None, filename: str, content: bytes, sheet: str = ""
) -> ImportJob:
    job = ImportJob.objects.create(
        organization=org,
        created_by=actor,
        filename=filename[:255],
        sheet=sheet,
        content=content,
        rows_total=count_rows(content, sheet),
    )
    audit_log(
        org=org,
        actor=actor,
        verb="measurement_import.created",
        obj=job,
        after={"filename": job.filename, "sheet": sheet, "bytes": len(content), "rows": job.rows_total},
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
        sheet=job.sheet,
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
