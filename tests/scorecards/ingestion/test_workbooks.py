"""Workbooks (.xlsx) and tab-separated files in the measurement import: the CSV import's rules and line-numbered
problems, read through the one parser (scorecards.tables)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from openpyxl import Workbook

from scorecards.ingestion.csv_import import measurement_import_create, measurement_import_run
from scorecards.models import ImportJob, Measurement


def workbook(*sheets: tuple[str, list[list]]) -> bytes:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def run(tenant, content: bytes, filename: str = "data.xlsx", sheet: str = "") -> ImportJob:
    job = measurement_import_create(
        org=tenant.org, actor=tenant.admin.user, filename=filename, content=content, sheet=sheet
    )
    return measurement_import_run(job=job)


def problems(job: ImportJob) -> list[tuple[int | None, str, str]]:
    return [(e["line"], e["field"], e["message"]) for e in job.errors]


def stored(tenant) -> list[tuple[datetime, float]]:
    return list(Measurement.objects.filter(kpi=tenant.kpi).order_by("at").values_list("at", "value"))


def test_a_workbooks_first_sheet_is_imported_with_its_dates_in_the_organizations_zone(tenant):
    tenant.org.timezone = "Europe/Berlin"
    tenant.org.save()
    content = workbook(
        (
            "Data",
            [
                ["KPI", "At", "Value"],
                ["ops.throughput", datetime(2026, 11, 2, 9), 1250],
                [None],
                ["ops.throughput", "2026-11-03T08:00:00Z", "1310.5"],
            ],
        ),
        ("Other", [["nothing", "here"]]),
    )
    job = run(tenant, content)
    assert (job.state, job.rows_total, job.accepted) == ("done", 2, 2)
    assert stored(tenant) == [
        (datetime(2026, 11, 2, 8, tzinfo=UTC), 1250.0),
        (datetime(2026, 11, 3, 8, tzinfo=UTC), 1310.5),
    ]


def test_a_named_sheet_is_read_and_bad_rows_are_named_by_their_row_numbers(tenant):
    content = workbook(
        ("Notes", [["read me first"]]),
        (
            "KPIs",
            [
                ["kpi", "at", "value"],
                ["ops.throughput", datetime(2026, 11, 2, 9), 1],
                ["ops.unknown", datetime(2026, 11, 2, 9), 2],
                ["ops.throughput", datetime(2026, 11, 3, 9), "n/a"],
                ["ops.throughput", None, 4],
                ["ops.throughput", datetime(2026, 11, 4, 9), 5, "extra"],
            ],
        ),
    )
    job = run(tenant, content, sheet="KPIs")
    assert job.state == "failed" and job.accepted == 0
    assert problems(job) == [
        (3, "kpi", 'unknown KPI "ops.unknown"'),
        (4, "value", "must be a finite number"),
        (5, "at", "must be an ISO 8601 time with a zone, e.g. 2026-11-29T08:00:00+01:00"),
        (6, "", "has 4 fields, expected 3 (kpi, at, value)"),
    ]
    assert not Measurement.objects.exists()


@pytest.mark.parametrize(
    ("content", "sheet", "message"),
    [
        (
            workbook(("Data", [["kpi", "at", "value"]])),
            "Missing",
            'the workbook has no sheet "Missing" (its sheets: "Data")',
        ),
        (b"PK\x03\x04 not really a zip", "", "is not an Excel workbook (.xlsx); save it as .xlsx or as CSV UTF-8"),
        (
            workbook(("Data", [["kpi", "when", "value"]])),
            "",
            'unknown column "when"; missing column "at": the columns are kpi, at and value',
        ),
        (workbook(("Data", [])), "", "the file is empty; the first line must be the header kpi,at,value"),
    ],
    ids=["no-such-sheet", "broken", "header", "empty"],
)
def test_an_unreadable_workbook_is_one_clear_problem(tenant, content, sheet, message):
    job = run(tenant, content, sheet=sheet)
    assert job.state == "failed" and problems(job) == [(1, "", message)]


def test_a_tab_separated_file_is_read_like_csv(tenant):
    job = run(
        tenant,
        b"kpi\tat\tvalue\nops.throughput\t2026-11-02T08:00:00Z\t7,5\nops.throughput\t2026-11-03T08:00:00Z\t8\n",
        "data.tsv",
    )
    # a decimal comma is a semicolon file's; in a TSV it stays no number
    assert problems(job) == [(2, "value", "must be a finite number")]
    job = run(tenant, b"kpi\tat\tvalue\nops.throughput\t2026-11-02T08:00:00Z\t7.5\n", "data.tsv")
    assert job.state == "done" and stored(tenant) == [(datetime(2026, 11, 2, 8, tzinfo=UTC), 7.5)]


def test_the_upload_page_takes_a_workbook_and_its_sheet(tenant, stranger_tenant):
    url = reverse("scorecards:measurement_import", kwargs={"org_slug": tenant.org.slug})
    content = workbook(
        ("Sheet1", [["x"]]), ("Week", [["kpi", "at", "value"], ["ops.throughput", "2026-11-02T08:00:00Z", 3]])
    )
    upload = SimpleUploadedFile(
        "week.xlsx", content, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response = tenant.client(tenant.admin).post(url, {"file": upload, "sheet": " Week "}, follow=True)
    job = ImportJob.objects.get(filename="week.xlsx")
    assert (job.state, job.sheet, job.accepted) == ("done", "Week", 1)
    assert "measurements imported" in response.content.decode()
    # A stranger's admin sees nothing of it.
    job_url = reverse("scorecards:measurement_import_job", kwargs={"org_slug": tenant.org.slug, "job_id": job.pk})
    assert stranger_tenant.client(stranger_tenant.admin).get(job_url).status_code in (403, 404)
