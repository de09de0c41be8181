"""CSV imports of measurements: the file format, all-or-nothing storing, the command, the page and the worker."""

from __future__ import annotations

import os
import re
import signal
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import connections
from django.urls import reverse

from governance.models import AuditEvent
from scorecards import tasks
from scorecards.ingestion import csv_import
from scorecards.ingestion.csv_import import csv_check, measurement_import_create, measurement_import_run
from scorecards.models import ImportJob, Kpi, Measurement, MeasurementRevision
from tests.factories import KpiFactory
from tests.scorecards.evaluation.test_sweep_celery import _subprocess_env, _worker, needs_redis, purge_queue, wait_until

BASE = datetime(2026, 1, 1, tzinfo=UTC)
HEADER = "kpi,at,value\n"


def lines(count: int, *, key: str = "ops.throughput", start: int = 0, value: float = 10) -> str:
    """`count` good data lines, one minute apart."""
    return "".join(f"{key},{(BASE + timedelta(minutes=i)).isoformat()},{value + i % 7}\n" for i in range(start, count))


def run(tenant, content: bytes | str, filename: str = "data.csv") -> ImportJob:
    content = content.encode() if isinstance(content, str) else content
    job = measurement_import_create(org=tenant.org, actor=tenant.admin.user, filename=filename, content=content)
    return measurement_import_run(job=job)


def stored(tenant) -> list[tuple[datetime, float]]:
    return list(Measurement.objects.filter(kpi=tenant.kpi).order_by("at").values_list("at", "value"))


def problems(job: ImportJob) -> list[tuple[int | None, str, str]]:
    return [(e["line"], e["field"], e["message"]) for e in job.errors]


# --- the file format ------------------------------------------------------------------------------


def test_it_imports_a_file_and_keeps_only_the_result_of_the_job(tenant):
    job = run(
        tenant, HEADER + "ops.throughput,2026-11-02T09:00:00+01:00,1250\nops.throughput,2026-11-03T08:00:00Z,1310.5\n"
    )
    assert (job.state, job.rows_total, job.rows_checked, job.accepted, job.error_count) == ("done", 2, 2, 2, 0)
    assert stored(tenant) == [
        (datetime(2026, 11, 2, 8, tzinfo=UTC), 1250.0),
        (datetime(2026, 11, 3, 8, tzinfo=UTC), 1310.5),
    ]
    assert set(Measurement.objects.values_list("source", flat=True)) == {"csv"}
    job.refresh_from_db()
    assert bytes(job.content) == b"" and job.finished_at is not None and job.filename == "data.csv"
    events = AuditEvent.objects.filter(verb__startswith="measurement_import.", object_id=str(job.pk)).order_by("pk")
    assert [(e.verb, e.actor_id) for e in events] == [
        ("measurement_import.created", tenant.admin.user_id),
        ("measurement_import.finished", tenant.admin.user_id),
    ]
    assert events[1].after == {"state": "done", "rows": 2, "accepted": 2, "problems": 0}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\xef\xbb\xbf" + HEADER.encode() + b"ops.throughput,2026-11-02T08:00:00Z,1.5\n", id="bom"),
        pytest.param(b"kpi;at;value\nops.throughput;2026-11-02T08:00:00Z;1,5\n", id="semicolons-decimal-comma"),
        pytest.param(b"kpi;at;value\nops.throughput;2026-11-02T08:00:00Z;1.5\n", id="semicolons-decimal-point"),
        pytest.param(b"kpi,at,value\r\nops.throughput,2026-11-02T08:00:00Z,1.5\r\n", id="crlf"),
        pytest.param(b"kpi,at,value\rops.throughput,2026-11-02T08:00:00Z,1.5\r", id="cr"),
        pytest.param(b"kpi,at,value\n\n  \nops.throughput,2026-11-02T08:00:00Z,1.5\n\n,,\n", id="blank-lines"),
        pytest.param(b'"kpi","at","value"\n"ops.throughput","2026-11-02T08:00:00Z","1.5"\n', id="quoted"),
        pytest.param(b'kpi,at,value\nops.throughput,2026-11-02T08:00:00Z," 1.5 "\n', id="spaces"),
        pytest.param(b"Value,KPI,At\n1.5,ops.throughput,2026-11-02T08:00:00Z\n", id="other-order-and-case"),
        pytest.param(b"kpi,at,value\nops.throughput,2026-11-02T08:00:00Z,1.5", id="no-final-newline"),
    ],
)
def test_it_reads_the_csv_variants_spreadsheets_write(tenant, content):
    job = run(tenant, content)
    assert (job.state, job.accepted, problems(job)) == ("done", 1, [])
    assert stored(tenant) == [(datetime(2026, 11, 2, 8, tzinfo=UTC), 1.5)]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (
            b"ops.throughput,2026-11-02T08:00:00Z,1\n",
            1,
            "the first line must be the header kpi,at,value (in any order), "
            'not "ops.throughput,2026-11-02T08:00:00Z,1"',
        ),
        (b"kpi,at,value,unit\n", 1, 'unknown column "unit": the columns are kpi, at and value'),
        (b"kpi,value\n", 1, 'missing column "at": the columns are kpi, at and value'),
        (b"kpi,at,value,kpi\n", 1, 'column "kpi" appears twice: the columns are kpi, at and value'),
        (b"\n \n", 1, "the file is empty; the first line must be the header kpi,at,value"),
        (
            b"kpi,at,value\nops.throughput,2026-11-02T08:00:00Z,1\r\nops.throughput,2026-11-02T09:00:00Z,Z\xfcrich\n",
            3,
            "is not UTF-8 text (byte 0xFC); save the file as CSV UTF-8 and try again",
        ),
    ],
    ids=["no-header", "unknown-column", "missing-column", "column-twice", "blank", "latin-1"],
)
def test_it_rejects_a_file_it_cannot_read_and_names_the_line(tenant, content, line, message):
    job = run(tenant, content)
    assert (job.state, problems(job)) == ("failed", [(line, "", message)])
    assert stored(tenant) == []


def test_it_reports_every_bad_line_with_its_line_number_and_stores_nothing(tenant):
    content = (
        HEADER
        + "ops.throughput,2026-11-02T08:00:00Z,1\n"  # line 2: good
        + "\n"
        + "ops.throughput,2026-11-02T09:00:00Z,abc\n"  # line 4
        + "ops.throughput,2026-11-02T10:00:00Z,nan\n"
        + "ops.throughput,2026-11-02T11:00:00Z,inf\n"
        + "ops.throughput,2026-11-02T12:00:00Z,1e999\n"
        + "ops.throughput,2026-11-02T13:00:00Z,1,5\n"  # a decimal comma in a comma file
        + "ops.throughput,2026-11-02T14:00:00Z\n"
        + "no.such.kpi,2026-11-02 15:00,1\n"  # line 10
        + "ops.throughput,2026-11-02T08:00:00+00:00,2\n"  # the time of line 2 again
        + '"ops.throughput","2026-11-02T16:00:00Z","1\n2"\n'  # a row over two lines, reported where it starts
    )
    job = run(tenant, content)
    assert (job.state, job.accepted, job.error_count) == ("failed", 0, 10)
    assert problems(job) == [
        (4, "value", "must be a finite number"),
        (5, "value", "must be a finite number"),
        (6, "value", "must be a finite number"),
        (7, "value", "must be a finite number"),
        (8, "", "has 4 fields, expected 3 (kpi, at, value); quote values that contain a comma"),
        (9, "", "has 2 fields, expected 3 (kpi, at, value)"),
        (10, "kpi", 'unknown KPI "no.such.kpi"'),
        (10, "at", "has no zone; add one, e.g. +01:00 or Z"),
        (11, "at", "ops.throughput already has a value at this time in line 2"),
        (12, "value", "must be a finite number"),
    ]
    assert stored(tenant) == []


def test_it_reports_the_bad_line_and_stores_nothing(tenant):
    """Line 70,001 of a file with 75,000 good lines around it: the whole file is refused."""
    content = HEADER + lines(69_999) + "ops.throughput,2026-11-02T08:00:00Z,n/a\n" + lines(75_000, start=69_999)
    reported = []
    checked = csv_check(org=tenant.org, content=content.encode(), progress=reported.append)
    assert (checked.ok, checked.count, checked.problem_count) == (False, 75_001, 1)
    assert [(p.where, p.field, p.message) for p in checked.problems] == [(70_001, "value", "must be a finite number")]
    assert reported == list(range(csv_import.CHUNK, 75_001, csv_import.CHUNK)) + [75_001]
    job = run(tenant, content)
    assert (job.state, job.rows_total, job.rows_checked) == ("failed", 75_001, 75_001)
    assert problems(job) == [(70_001, "value", "must be a finite number")]
    assert not Measurement.objects.exists()


def test_a_clean_100000_row_file_imports_completely(tenant):
    job = run(tenant, HEADER + lines(100_000))
    assert (job.state, job.rows_total, job.accepted, job.error_count) == ("done", 100_000, 100_000, 0)
    assert Measurement.objects.filter(kpi=tenant.kpi).count() == 100_000


def test_the_same_file_twice_stores_nothing_new_and_a_changed_value_keeps_a_revision(tenant):
    content = HEADER + lines(2000)
    run(tenant, content)
    before = list(Measurement.objects.order_by("pk").values_list("pk", "value", "ingested_at"))
    assert run(tenant, content).accepted == 2000
    assert list(Measurement.objects.order_by("pk").values_list("pk", "value", "ingested_at")) == before
    assert not MeasurementRevision.objects.exists()
    run(tenant, HEADER + f"ops.throughput,{BASE.isoformat()},99\n")
    assert Measurement.objects.get(kpi=tenant.kpi, at=BASE).value == 99
    assert list(MeasurementRevision.objects.values_list("value", "source")) == [(10.0, "csv")]


def test_it_keeps_the_first_thousand_problems_and_counts_the_rest(tenant):
    job = run(tenant, HEADER + "".join(f"ops.throughput,2026-11-02T08:00:00Z,x{i}\n" for i in range(1500)))
    assert job.error_count == 1500
    assert len(job.errors) == csv_import.MAX_PROBLEMS and job.errors[0]["line"] == 2


def test_a_stranger_organizations_kpi_keys_are_unknown(tenant, stranger_tenant):
    KpiFactory(organization=stranger_tenant.org, key="globex.revenue")
    job = run(tenant, HEADER + "globex.revenue,2026-11-02T08:00:00Z,1\n")
    assert problems(job) == [(2, "kpi", 'unknown KPI "globex.revenue"')]
    # Both organizations have an ops.throughput: the import writes to its own organization's only.
    assert run(tenant, HEADER + "ops.throughput,2026-11-02T08:00:00Z,1\n").state == "done"
    assert not Measurement.objects.filter(organization=stranger_tenant.org).exists()
    assert Measurement.objects.get().kpi_id == tenant.kpi.pk


# --- runs: idempotent, resumable ------------------------------------------------------------------


def test_a_finished_job_is_not_run_again(tenant):
    """Celery redelivers a task whose worker died after it finished (acks_late): nothing happens twice."""
    job = run(tenant, HEADER + "ops.throughput,2026-11-02T08:00:00Z,1\n")
    finished = AuditEvent.objects.filter(verb="measurement_import.finished").count()
    again = measurement_import_run(job=ImportJob.objects.get(pk=job.pk))
    assert (again.state, again.accepted, again.finished_at) == ("done", 1, job.finished_at)
    assert AuditEvent.objects.filter(verb="measurement_import.finished").count() == finished == 1


def test_a_job_interrupted_halfway_runs_again_from_the_start(tenant):
    content = (HEADER + lines(20)).encode()
    job = measurement_import_create(org=tenant.org, actor=tenant.admin.user, filename="data.csv", content=content)
    ImportJob.objects.filter(pk=job.pk).update(state=ImportJob.State.STORING, rows_checked=20)  # a worker died here
    job = measurement_import_run(job=job)
    assert (job.state, job.accepted, job.rows_checked) == ("done", 20, 20)
    assert Measurement.objects.count() == 20


def test_a_job_stopped_by_the_time_limit_is_rejected_without_storing(tenant, monkeypatch):
    job = measurement_import_create(
        org=tenant.org, actor=tenant.admin.user, filename="data.csv", content=(HEADER + lines(20)).encode()
    )

    def too_slow(**kwargs):
        raise tasks.SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks, "measurement_import_run", too_slow)
    assert tasks.import_measurements(job.organization_id, job.pk) == {"state": "failed", "accepted": 0, "problems": 1}
    job.refresh_from_db()
    assert problems(job) == [(None, "", "took too long; split the file into smaller ones")]
    assert bytes(job.content) == b"" and not Measurement.objects.exists()


# --- the command ----------------------------------------------------------------------------------


def test_the_command_imports_a_file(tenant, tmp_path):
    path = tmp_path / "throughput.csv"
    path.write_text(HEADER + lines(3))
    out = StringIO()
    call_command("import_measurements", "--org", tenant.org.slug, str(path), stdout=out)
    assert out.getvalue() == f"Imported 3 measurements from {path}.\n"
    assert ImportJob.objects.get(filename="throughput.csv").created_by is None


def test_the_command_prints_every_problem_and_exits_non_zero(tenant, tmp_path, capsys, monkeypatch):
    # run_from_argv closes every connection when it exits, which would end the test's transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + lines(3) + "ops.throughput,2026-11-02T08:00:00Z,oops\nnope,2026-11-02T08:00:00Z,1\n")
    with pytest.raises(SystemExit) as exit:
        execute_from_command_line(["manage.py", "import_measurements", "--org", tenant.org.slug, str(path)])
    assert exit.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "line 5: value: must be a finite number",
        'line 6: kpi: unknown KPI "nope"',
        f"CommandError: {path}: 2 problem(s); nothing was stored.",
    ]
    assert not Measurement.objects.exists()


def test_the_command_caps_the_printed_problems_and_prints_the_total(tenant, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + lines(250).replace(",1", ",?1"))
    err = StringIO()
    with pytest.raises(CommandError, match=r"250 problem\(s\); nothing was stored"):
        call_command("import_measurements", "--org", tenant.org.slug, str(path), stderr=err)
    printed = err.getvalue().splitlines()
    assert len(printed) == 101 and printed[0] == "line 2: value: must be a finite number"
    assert printed[-1] == "... and 150 more."


def test_the_command_refuses_an_unknown_organization_or_file(tenant, tmp_path):
    with pytest.raises(CommandError, match='No organization "nope"'):
        call_command("import_measurements", "--org", "nope", str(tmp_path / "x.csv"))
    with pytest.raises(CommandError, match=r"Cannot read .*missing.csv: No such file or directory"):
        call_command("import_measurements", "--org", tenant.org.slug, str(tmp_path / "missing.csv"))
    assert not ImportJob.objects.filter(filename="missing.csv").exists()


# --- the page -------------------------------------------------------------------------------------


def upload(name: str, content: str | bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content, "text/csv")


def test_only_admins_may_import(tenant):
    url = reverse("scorecards:measurement_import", kwargs={"org_slug": tenant.org.slug})
    job_url = reverse(
        "scorecards:measurement_import_job", kwargs={"org_slug": tenant.org.slug, "job_id": tenant.import_job.pk}
    )
    for membership in (tenant.member, tenant.executive, tenant.lead):
        client = tenant.client(membership)
        assert client.get(url).status_code == 403
        assert client.post(url, {"file": upload("a.csv", HEADER + lines(1))}).status_code == 403
        assert client.get(job_url).status_code == 403
    assert not Measurement.objects.exists()
    assert sum(e.times for e in AuditEvent.objects.filter(verb="security.permission_denied")) == 9
    html = tenant.client(tenant.admin).get(url).content.decode()
    assert "kpi,at,value\nops.throughput," in html and "Import data" in html


def test_the_recent_imports_are_listed_in_a_constant_number_of_queries(tenant, django_assert_max_num_queries):
    for i in range(30):
        run(tenant, HEADER + lines(1, value=i))
    # Some by the command line (no user), so that both kinds of row are drawn.
    ImportJob.objects.filter(pk__in=ImportJob.objects.order_by("-pk").values("pk")[:5]).update(created_by=None)
    url = reverse("scorecards:measurement_import", kwargs={"org_slug": tenant.org.slug})
    client = tenant.client(tenant.admin)
    with django_assert_max_num_queries(10):
        html = client.get(url).content.decode()
    assert html.count('class="import-file"') == 20 and "Command line" in html


def test_a_small_file_is_imported_within_the_request(tenant):
    client = tenant.client(tenant.admin)
    url = reverse("scorecards:measurement_import", kwargs={"org_slug": tenant.org.slug})
    response = client.post(url, {"file": upload("week.csv", HEADER + lines(5))}, follow=True)
    job = ImportJob.objects.get(filename="week.csv")
    assert response.redirect_chain == [(f"{url}{job.pk}/", 302)]
    html = response.content.decode()
    assert job.state == "done" and '5</span><span class="stat-label">measurements imported' in html
    assert "hx-trigger" not in html and "<progress" not in html
    assert Measurement.objects.count() == 5
    assert "week.csv" in client.get(url).content.decode()  # in the list of recent imports


def test_a_rejected_file_shows_each_problem_with_its_line(tenant):
    client = tenant.client(tenant.admin)
    url = reverse("scorecards:measurement_import", kwargs={"org_slug": tenant.org.slug})
    response = client.post(url, {"file": upload("bad.csv", HEADER + lines(3) + "ops.x,2026-11-02T08:00:00Z,1\n")})
    html = client.get(response.url).content.decode()
    assert "Rejected: 1 problem; nothing was stored." in html
    assert '<td class="num">5</td><td><code>kpi</code></td><td>unknown KPI &quot;ops.x&quot;</td>' in html


def test_a_large_file_is_queued_and_its_page_shows_the_progress(
    tenant, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.IMPORT_INLINE_MAX_ROWS = 10
    queued = []
    monkeypatch.setattr(tasks.import_measurements, "delay", lambda *args: queued.append(args))
    client = tenant.client(tenant.admin)
    url = reverse("scorecards:measurement_import", kwargs={"org_slug": tenant.org.slug})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"file": upload("big.csv", HEADER + lines(50))})
    job = ImportJob.objects.get(filename="big.csv")
    assert queued == [(tenant.org.pk, job.pk)] and job.state == "queued" and not Measurement.objects.exists()
    job_url = reverse("scorecards:measurement_import_job", kwargs={"org_slug": tenant.org.slug, "job_id": job.pk})
    assert response.url == job_url

    html = client.get(response.url).content.decode()
    assert "<html" in html and 'hx-trigger="every 1s"' in html and "Waiting for a worker to start on 50 rows" in html
    ImportJob.objects.filter(pk=job.pk).update(state=ImportJob.State.CHECKING, rows_checked=20)
    partial = client.get(response.url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and 'id="import-job"' in partial
    assert re.search(r'<progress [^>]*max="50" value="20"', partial) and "Checked 20 of 50 rows" in partial

    tasks.import_measurements(job.organization_id, job.pk)  # what the worker does
    partial = client.get(response.url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in partial and "<progress" not in partial  # polling stops with the result
    assert "measurements imported" in partial and Measurement.objects.count() == 50


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("empty.csv", b"", "The file is empty; it needs the header line kpi,at,value"),
        ("data.pdf", b"%PDF-1.7", "&quot;data.pdf&quot; is neither a .csv, .tsv nor an .xlsx file."),
        ("data.xlsx", b"%PDF-1.7", "&quot;data.xlsx&quot; is not an Excel workbook."),
        ("sheet.csv", b"PK\x03\x04\x14\x00\x06\x00", "&quot;sheet.csv&quot; is not a CSV text file"),
        ("big.csv", "x" * 101, "The file is 101\xa0bytes; the limit is 100\xa0bytes. Split it into smaller files."),
    ],
    ids=["empty", "extension", "not-a-workbook", "binary", "too-large"],
)
def test_the_upload_form_refuses_what_is_no_csv_file(tenant, settings, name, content, error):
    settings.IMPORT_MAX_BYTES = 100
    url = reverse("scorecards:measurement_import", kwargs={"org_slug": tenant.org.slug})
    response = tenant.client(tenant.admin).post(url, {"file": upload(name, content)})
    assert response.status_code == 422
    assert error in response.content.decode()
    assert not ImportJob.objects.filter(filename=name).exists()


# --- a real worker --------------------------------------------------------------------------------


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_imports_a_large_upload_while_the_page_shows_its_progress(tenant):
    """The upload is queued on the real broker; a worker process checks and stores it; the page polls."""
    purge_queue()
    worker = _worker(_subprocess_env())
    try:
        client = tenant.client(tenant.admin)
        url = reverse("scorecards:measurement_import", kwargs={"org_slug": tenant.org.slug})
        response = client.post(url, {"file": upload("year.csv", HEADER + lines(100_000))})
        seen = set()

        def finished() -> bool:
            html = client.get(response.url, HTTP_HX_REQUEST="true").content.decode()
            if match := re.search(r'<progress [^>]*value="(\d+)"', html):
                seen.add(int(match[1]))
            return "hx-trigger" not in html

        wait_until(finished, 120, "the worker to import the file")
        # The commit queued an evaluation of the new data; waiting for it also leaves no task behind in flight.
        evaluated = Kpi.objects.filter(pk=tenant.kpi.pk, schedule__needs_evaluation=False).exclude(
            schedule__evaluated_at=None
        )
        wait_until(evaluated.exists, 60, "the evaluation queued by the import")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    job = ImportJob.objects.get(filename="year.csv")
    assert (job.state, job.accepted, bytes(job.content)) == ("done", 100_000, b"")
    assert Measurement.objects.filter(kpi=tenant.kpi).count() == 100_000
    assert any(0 < n < 100_000 for n in seen), f"no progress between 0 and 100,000 was shown: {sorted(seen)}"
