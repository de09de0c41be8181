"""Pulls of data sources: one run, the sweep that claims due sources, backoff, Run now, the tasks and commands."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from unittest import mock

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection

from escalations.management.commands.tick import SWEEPS
from governance import tenancy
from governance.models import AuditEvent
from governance.services.secrets import secret_set
from scorecards import tasks
from scorecards.connectors import http_json
from scorecards.ingestion.pulls import (
    LOST,
    MAX_BACKOFF,
    UNEXPECTED,
    backoff,
    data_source_pull,
    data_source_run_request,
    data_sources_claim_due,
    pull_due_sources,
)
from scorecards.models import DataSource, DataSourceRun, Kpi, Measurement
from tests.factories import KpiFactory, OrganizationFactory

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SECRET = "hunter2-not-for-your-eyes"


def http_source(org, json_server, *, key="crm", path="/kpis", kpis=("ops.throughput",), **fields) -> DataSource:
    pulls = [{"kpi": kpi, "items": "rows", "at": "at", "value": "value"} for kpi in kpis]
    return DataSource.objects.create(
        organization=org,
        key=key,
        kind="http_json",
        every=fields.pop("every", timedelta(hours=1)),
        config={"url": json_server.url(path), "pulls": pulls, **fields.pop("config", {})},
        **fields,
    )


def rows(*points) -> dict:
    return {"rows": [{"at": at, "value": value} for at, value in points]}


def collect() -> tuple[list[DataSourceRun], object]:
    runs: list[DataSourceRun] = []
    return runs, runs.append


# --- one run --------------------------------------------------------------------------------------


def test_a_good_run_stores_every_row_and_records_the_run(tenant, json_server):
    source = http_source(tenant.org, json_server)
    json_server.answer("/kpis", rows(("2026-11-28T08:00:00Z", 5), ("2026-11-29T08:00:00+01:00", 7.5)))
    with time_machine.travel(NOW, tick=False):
        run = data_source_pull(source=source, trigger=DataSourceRun.Trigger.SCHEDULE)
    assert (run.rows, run.error, run.finished_at, run.trigger) == (2, "", NOW, "schedule")
    stored = Measurement.objects.filter(kpi=tenant.kpi).order_by("at")
    assert [(m.at, m.value, m.source) for m in stored] == [
        (datetime(2026, 11, 28, 8, tzinfo=UTC), 5.0, "pull"),
        (datetime(2026, 11, 29, 7, tzinfo=UTC), 7.5, "pull"),
    ]
    kpi = Kpi.objects.get(pk=tenant.kpi.pk)
    assert kpi.needs_evaluation and kpi.last_measured_at == datetime(2026, 11, 29, 7, tzinfo=UTC)
    source.refresh_from_db()
    assert (source.failures, source.next_run_at) == (0, NOW + timedelta(hours=1))


def test_one_bad_row_rejects_the_whole_run_with_the_row_numbers(tenant, json_server):
    other = KpiFactory(organization=tenant.org, key="ops.backlog")
    source = http_source(tenant.org, json_server, kpis=("ops.throughput", "ops.backlog"))
    json_server.answer(
        "/kpis", rows(("2026-11-28T08:00:00Z", 5), ("2026-11-28T09:00:00Z", "lots"), ("2026-11-28T10:00:00", 1))
    )
    with time_machine.travel(NOW, tick=False):
        run = data_source_pull(source=source)
    assert run.rows == 0
    assert run.error.splitlines() == [
        "Rejected all 6 rows; nothing was stored. One bad row rejects the run:",
        "row 2 (ops.throughput) value: must be a finite number",
        "row 5 (ops.backlog) value: must be a finite number",
    ]
    assert not Measurement.objects.filter(kpi__in=[tenant.kpi, other]).exists()


def test_a_time_without_zone_or_a_date_is_in_the_organizations_zone(tenant, json_server):
    source = http_source(tenant.org, json_server)  # the tenant's zone is Europe/Berlin
    json_server.answer("/kpis", rows(("2026-11-28", 1), ("2026-11-28T09:30:00", 2)))
    with time_machine.travel(NOW, tick=False):
        assert data_source_pull(source=source).error == ""
    assert list(Measurement.objects.filter(kpi=tenant.kpi).order_by("at").values_list("at", flat=True)) == [
        datetime(2026, 11, 27, 23, tzinfo=UTC),
        datetime(2026, 11, 28, 8, 30, tzinfo=UTC),
    ]


def test_since_is_the_newest_stored_time_of_each_kpi(tenant, json_server):
    KpiFactory(organization=tenant.org, key="ops.new")
    Measurement.objects.bulk_create(
        Measurement(organization=tenant.org, kpi=tenant.kpi, at=NOW - timedelta(days=d), value=1) for d in (3, 1, 2)
    )
    source = http_source(tenant.org, json_server, kpis=("ops.throughput", "ops.new"))
    source.config["url"] = json_server.url("/kpis?since={since}")
    source.save()
    json_server.answer("/kpis", rows())
    with time_machine.travel(NOW, tick=False):
        assert data_source_pull(source=source).error == ""
    assert [path for path, _ in json_server.requests] == [
        "/kpis?since=2026-11-28T12%3A00%3A00%2B00%3A00",
        "/kpis?since=1970-01-01T00%3A00%3A00%2B00%3A00",  # no data yet: everything the source has
    ]


def test_a_pull_of_an_archived_kpi_fails_before_reading_the_source(tenant, json_server):
    Kpi.objects.filter(pk=tenant.kpi.pk).update(archived_at=NOW)
    source = http_source(tenant.org, json_server)
    run = data_source_pull(source=source)
    assert run.error == 'the pulls name the unknown or archived KPI "ops.throughput"'
    assert json_server.requests == []


def test_errors_never_store_a_dsn_or_a_header_value(tenant, json_server):
    # As the pull task runs: in the organization's scope, the only one that reads its secrets.
    with tenancy.scope(organization=tenant.org.pk):
        dsn = f"postgres://pull:{SECRET}@127.0.0.1:1/warehouse"
        secret_set(org=tenant.org, actor=None, name="warehouse_dsn", value=dsn)
        secret_set(org=tenant.org, actor=None, name="crm_token", value=f"Bearer {SECRET}")
        source = http_source(tenant.org, json_server, config={"headers_secret": {"Authorization": "crm_token"}})
        json_server.answer("/kpis", {"error": f"bad token Bearer {SECRET}"}, status=401)
        errors = [data_source_pull(source=s).error for s in (tenant.data_source, source)]
    assert errors[0].startswith("could not connect to the database of warehouse_dsn: ")
    assert errors[1] == "127.0.0.1 answered HTTP 401 Unauthorized"
    assert json_server.requests[0][1]["Authorization"] == f"Bearer {SECRET}"
    stored = list(DataSourceRun.objects.values_list("error", flat=True))
    stored += [str(e.after) for e in AuditEvent.objects.all()]
    assert stored and not any(SECRET in text for text in stored)


# --- backoff --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "failures", "wait"),
    [
        (timedelta(hours=1), 1, timedelta(hours=1)),
        (timedelta(hours=1), 2, timedelta(hours=2)),
        (timedelta(hours=1), 3, timedelta(hours=4)),
        (timedelta(hours=1), 4, MAX_BACKOFF),
        (timedelta(minutes=5), 4, timedelta(minutes=40)),
        (timedelta(days=1), 1, MAX_BACKOFF),
        (timedelta(minutes=1), 10_000, MAX_BACKOFF),
        (timedelta(weeks=999_999), 50, MAX_BACKOFF),
        (timedelta(0), 1, timedelta(minutes=1)),
    ],
)
def test_backoff_doubles_from_every_up_to_six_hours(every, failures, wait):
    assert backoff(every, failures) == wait


def test_it_backs_off_after_a_failed_pull_and_a_good_one_resets_it(tenant, json_server):
    DataSource.objects.filter(pk=tenant.data_source.pk).update(archived_at=NOW)
    source = http_source(tenant.org, json_server)
    json_server.answer("/kpis", {}, status=503)
    moment, waits = NOW, []
    for _ in range(4):
        with time_machine.travel(moment, tick=False):
            assert pull_due_sources(org_id=tenant.org.pk).failed == 1
        source.refresh_from_db()
        waits.append(source.next_run_at - moment)
        moment = source.next_run_at
    assert waits == [timedelta(hours=1), timedelta(hours=2), timedelta(hours=4), timedelta(hours=6)]
    assert source.failures == 4
    assert AuditEvent.objects.filter(verb="data_source.failing").count() == 1  # when it broke, not every run

    json_server.answer("/kpis", rows(("2026-11-29T08:00:00Z", 3)))
    with time_machine.travel(moment, tick=False):
        assert pull_due_sources(org_id=tenant.org.pk).failed == 0
    source.refresh_from_db()
    assert (source.failures, source.next_run_at) == (0, moment + timedelta(hours=1))
    assert AuditEvent.objects.filter(verb="data_source.recovered").count() == 1


# --- the sweep ------------------------------------------------------------------------------------


def test_the_sweep_claims_only_live_sources_that_are_due(tenant, stranger_tenant, json_server):
    never = http_source(tenant.org, json_server, key="never")
    past = http_source(tenant.org, json_server, key="past", next_run_at=NOW - timedelta(minutes=5))
    http_source(tenant.org, json_server, key="later", next_run_at=NOW + timedelta(minutes=5))
    http_source(tenant.org, json_server, key="gone", archived_at=NOW - timedelta(days=1))
    http_source(stranger_tenant.org, json_server, key="foreign")
    DataSource.objects.filter(pk=tenant.data_source.pk).update(next_run_at=NOW + timedelta(hours=1))
    runs, dispatch = collect()
    with time_machine.travel(NOW, tick=False):
        result = pull_due_sources(org_id=tenant.org.pk, dispatch=dispatch)
    assert result.claimed == 2
    assert {run.source.key for run in runs} == {"never", "past"}
    assert {(run.trigger, run.started_at, run.finished_at) for run in runs} == {("schedule", NOW, None)}
    assert DataSource.objects.get(pk=never.pk).next_run_at == NOW + timedelta(hours=1)
    # The grid of a source that was due keeps its step: 5 minutes late, the next run is 55 minutes away.
    assert DataSource.objects.get(pk=past.pk).next_run_at == NOW + timedelta(minutes=55)


def test_a_second_sweep_does_not_claim_a_source_the_first_one_claimed(tenant):
    first, dispatch = collect()
    with time_machine.travel(NOW, tick=False):
        pull_due_sources(dispatch=dispatch)
        # Even if the source were due again, its unfinished run keeps it from being claimed twice.
        DataSource.objects.filter(pk=tenant.data_source.pk).update(next_run_at=None)
        again = data_sources_claim_due(now=NOW)
    assert [run.source_id for run in first] == [tenant.data_source.pk] and again == []


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_claim_each_source_once():
    org = OrganizationFactory()
    sources = DataSource.objects.bulk_create(
        DataSource(organization=org, key=f"s{i}", kind="sql", every=timedelta(hours=1)) for i in range(60)
    )
    claimed, barrier = [], threading.Barrier(2)

    def sweep():
        barrier.wait()
        try:
            with tenancy.for_sweep(None):  # a thread starts with no scope; the beat's task sets this one
                pull_due_sources(now=NOW, dispatch=lambda run: claimed.append(run.source_id), limit=7)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(s.pk for s in sources)
    assert DataSourceRun.objects.count() == 60


def test_a_failing_source_never_stops_the_others(tenant, json_server, monkeypatch):
    broken = http_source(tenant.org, json_server, key="broken", path="/broken")
    good = http_source(tenant.org, json_server, key="good")
    json_server.answer("/kpis", rows(("2026-11-29T08:00:00Z", 3)))
    original = http_json.HttpJsonConnector.rows

    def rows_or_bug(self, pull, since):
        if "/broken" in self.config["url"]:
            raise RuntimeError("a bug in a connector")
        return original(self, pull, since)

    monkeypatch.setattr(http_json.HttpJsonConnector, "rows", rows_or_bug)
    with time_machine.travel(NOW, tick=False):
        result = pull_due_sources()
    assert (result.claimed, result.failed, result.rows) == (3, 2, 1)
    errors = {run.source_id: run.error for run in DataSourceRun.objects.all()}
    assert errors[good.pk] == "" and errors[broken.pk] == UNEXPECTED
    assert (
        errors[tenant.data_source.pk]
        == "Set the organization secret `warehouse_dsn` (Administration → Secrets): it is not set"
    )
    assert Measurement.objects.filter(kpi=tenant.kpi).count() == 1


def test_a_lost_run_stops_blocking_its_source(tenant):
    lost = DataSourceRun.objects.create(
        organization=tenant.org, source=tenant.data_source, started_at=NOW - timedelta(hours=2)
    )
    with time_machine.travel(NOW, tick=False):
        runs = data_sources_claim_due(now=NOW)
    lost.refresh_from_db()
    assert [run.source_id for run in runs] == [tenant.data_source.pk]
    assert (lost.finished_at, lost.error) == (NOW, LOST)


# --- Run now, tasks and commands -----------------------------------------------------------------


def test_run_now_records_a_manual_run_and_queues_it_once_committed(tenant, django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.pull_data_source, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            run = data_source_run_request(source=tenant.data_source, actor=tenant.admin.user)
        assert not delay.called  # not before the commit
        for callback in callbacks:
            callback()
    delay.assert_called_once_with(tenant.org.pk, tenant.data_source.pk, run.pk)
    assert (run.trigger, run.requested_by, run.finished_at) == ("manual", tenant.admin.user, None)
    assert AuditEvent.objects.filter(verb="data_source.run_requested", actor=tenant.admin.user).exists()
    with pytest.raises(ValidationError, match="already on its way"):
        data_source_run_request(source=tenant.data_source, actor=tenant.admin.user)


def test_the_task_pulls_the_recorded_run_once(tenant, json_server):
    source = http_source(tenant.org, json_server)
    json_server.answer("/kpis", rows(("2026-11-29T08:00:00Z", 3)))
    run = DataSourceRun.objects.create(organization=tenant.org, source=source, trigger="manual")
    pull = partial(tasks.pull_data_source, source.organization_id, source.pk, run.pk)
    assert pull() == {"rows": 1, "error": ""}
    assert pull() == {"rows": 1, "error": ""}  # redelivered: nothing again
    assert len(json_server.requests) == 1 and DataSourceRun.objects.count() == 1


def test_the_beat_task_queues_one_task_per_due_source(tenant, stranger_tenant):
    with mock.patch.object(tasks.pull_data_source, "delay") as delay:
        result = tasks.pull_data_sources()
    runs = [mock.call(run.organization_id, run.source_id, run.pk) for run in DataSourceRun.objects.all()]
    assert result["claimed"] == 2
    assert sorted(delay.call_args_list) == sorted(runs)


def test_the_command_pulls_one_organization_and_tick_pulls_first(tenant, stranger_tenant):
    out = io.StringIO()
    call_command("pull_data_sources", "--org", tenant.org.slug, stdout=out)
    assert out.getvalue().strip() == "Pulled 1 data source(s): 0 row(s) stored, 1 failed."
    assert list(DataSourceRun.objects.values_list("source_id", flat=True)) == [tenant.data_source.pk]
    assert SWEEPS[0] == "pull_data_sources"
