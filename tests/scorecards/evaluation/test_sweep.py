"""The evaluation sweep against the database: scheduling, batching, guarded writes, errors, time travel."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.db.backends.signals import connection_created
from django.test.utils import CaptureQueriesContext

from governance import tenancy
from scorecards.evaluation.sweep import evaluate_due, next_tick
from scorecards.models import Kpi, KpiSchedule, Measurement, StatusChange
from tests.factories import KpiFactory, OrganizationFactory

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def measure(kpi: Kpi, at: datetime, value: float) -> None:
    Measurement.objects.update_or_create(kpi=kpi, at=at, defaults={"organization": kpi.organization, "value": value})
    Kpi.objects.filter(pk=kpi.pk).update(last_measured_at=at)
    KpiSchedule.objects.filter(kpi=kpi).update(needs_evaluation=True)


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [
        (T0, T0, T0 + timedelta(hours=1)),
        (T0, T0 + timedelta(minutes=59), T0 + timedelta(hours=1)),
        (T0, T0 + timedelta(hours=3, minutes=30), T0 + timedelta(hours=4)),  # missed ticks are not replayed
        (None, T0, T0 + timedelta(hours=1)),
        (T0 + timedelta(hours=2), T0, T0 + timedelta(hours=2)),  # data arrived early: the grid stays
    ],
)
def test_next_tick_steps_on_the_utc_grid(previous, now, expected):
    assert next_tick(previous, timedelta(hours=1), now) == expected


@pytest.mark.parametrize(
    ("previous", "every", "now", "expected"),
    [
        (T0, timedelta(hours=1), T0, T0 + timedelta(hours=1)),
        (T0, timedelta(hours=1), T0 + timedelta(hours=3), T0 + timedelta(hours=4)),  # on a tick: the next one
        (T0, timedelta(minutes=7), T0 + timedelta(hours=3, minutes=30), T0 + timedelta(minutes=217)),
        (T0, timedelta(days=1), T0 + timedelta(days=2, seconds=1), T0 + timedelta(days=3)),
        (None, timedelta(hours=1), T0, T0 + timedelta(hours=1)),
        (T0 + timedelta(hours=2), timedelta(hours=1), T0, T0 + timedelta(hours=2)),
    ],
)
def test_a_sweep_moves_the_schedule_to_the_next_tick_of_the_grid(db, previous, every, now, expected):
    kpi = KpiFactory(evaluate_every=every, next_evaluation_at=previous)
    KpiSchedule.objects.filter(kpi=kpi).update(needs_evaluation=True)  # due whatever its grid says
    assert evaluate_due(now=now).evaluated == 1
    kpi.refresh_from_db()
    assert (kpi.next_evaluation_at, kpi.evaluated_at) == (expected, now) == (next_tick(previous, every, now), now)


def test_it_evaluates_due_kpis_once_and_writes_one_status_change(db):
    kpi = KpiFactory(pending_for=timedelta(0), next_evaluation_at=T0)
    measure(kpi, T0 - timedelta(minutes=5), 1100)
    first = evaluate_due(now=T0)
    kpi.refresh_from_db()
    assert (first.evaluated, kpi.status, kpi.next_evaluation_at) == (1, "on_track", T0 + timedelta(hours=1))
    measure(kpi, T0 + timedelta(minutes=1), 700)
    evaluate_due(now=T0 + timedelta(minutes=2))
    evaluate_due(now=T0 + timedelta(minutes=2))  # a second sweep at the same moment finds nothing due
    kpi.refresh_from_db()
    assert kpi.status == "off_track"
    assert list(kpi.status_changes.values_list("old", "new")) == [("on_track", "off_track"), ("no_data", "on_track")]
    assert kpi.next_evaluation_at == T0 + timedelta(hours=1)  # new data does not move the grid


def test_a_sweep_that_started_earlier_never_judges_a_kpi_behind_a_newer_evaluation(db):
    kpi = KpiFactory(pending_for=timedelta(0), stale_after=timedelta(minutes=30), next_evaluation_at=T0)
    measure(kpi, T0 + timedelta(minutes=1), 1100)
    evaluate_due(now=T0 + timedelta(minutes=2))  # the newer sweep sees the data
    measure(kpi, T0 + timedelta(minutes=3), 1150)
    # A sweep whose clock stopped before that data (slow, or redelivered after a crash) would call it stale.
    assert evaluate_due(now=T0 - timedelta(hours=1)).evaluated == 0
    kpi.refresh_from_db()
    assert list(kpi.status_changes.values_list("old", "new")) == [("no_data", "on_track")]
    assert evaluate_due(now=T0 + timedelta(minutes=4)).evaluated == 1  # the new data waits for the next sweep


def test_kpis_that_are_not_due_are_left_alone(db):
    kpi = KpiFactory(next_evaluation_at=T0 + timedelta(minutes=30))
    assert evaluate_due(now=T0).evaluated == 0
    kpi.refresh_from_db()
    assert kpi.evaluated_at is None


def test_one_broken_kpi_is_recorded_with_backoff_and_does_not_stop_the_batch(db):
    broken = KpiFactory(thresholds={"warning": "lots", "critical": 1}, next_evaluation_at=T0)
    healthy = KpiFactory(organization=broken.organization, next_evaluation_at=T0)
    measure(healthy, T0, 1300)
    measure(broken, T0, 5)
    result = evaluate_due(now=T0)
    broken.refresh_from_db()
    healthy.refresh_from_db()
    assert (result.evaluated, result.errors) == (1, 1)
    assert healthy.status == "on_track"
    assert "warning" in broken.error and broken.error_count == 1
    assert broken.next_evaluation_at == T0 + timedelta(hours=1)  # first retry at the KPI's own pace
    assert (broken.evaluated_at, broken.schedule.version) == (None, 0)  # a failure is no evaluation
    evaluate_due(now=T0 + timedelta(hours=1))
    broken.refresh_from_db()
    assert broken.error_count == 2 and broken.next_evaluation_at == T0 + timedelta(hours=3)  # then 2h, 4h, ... 6h


def _sweep_queries(count: int) -> int:
    org = OrganizationFactory()
    kpis = [KpiFactory(organization=org, next_evaluation_at=T0) for _ in range(count)]
    Measurement.objects.bulk_create(
        Measurement(organization=org, kpi=k, at=T0 - timedelta(hours=h), value=900 + h) for k in kpis for h in range(5)
    )
    with CaptureQueriesContext(connection) as queries:
        result = evaluate_due(now=T0, batch_size=500)
    assert result.evaluated == count
    return len(queries)


def test_a_batch_costs_a_constant_number_of_queries(db):
    assert _sweep_queries(20) == _sweep_queries(60) <= 15


def test_other_organizations_are_untouched_when_one_is_named(db):
    mine, theirs = KpiFactory(next_evaluation_at=T0), KpiFactory(next_evaluation_at=T0)
    evaluate_due(now=T0, org_id=mine.organization_id)
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert mine.evaluated_at == T0 and theirs.evaluated_at is None


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("Europe/Berlin", datetime(2026, 3, 29, 0, 30, tzinfo=UTC)),  # 02:00 local jumps to 03:00
        ("Europe/Berlin", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # 03:00 local falls back to 02:00
        ("America/New_York", datetime(2026, 3, 8, 6, 30, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    ],
)
def test_a_dst_change_neither_skips_nor_doubles_an_evaluation_nor_moves_a_change(db, zone, change):
    org = OrganizationFactory(timezone=zone)
    start = change - timedelta(hours=2, minutes=30)
    kpi = KpiFactory(organization=org, pending_for=timedelta(hours=2), next_evaluation_at=start)
    measure(kpi, start - timedelta(minutes=1), 1100)
    evaluations, moment = [], start
    while moment <= start + timedelta(hours=5):
        with time_machine.travel(moment, tick=False):
            if moment == start + timedelta(minutes=90):
                measure(kpi, moment, 700)  # breach: off track once it held for 2 hours
            evaluate_due()
        kpi.refresh_from_db()
        if kpi.evaluated_at == moment:
            evaluations.append(moment)
        moment += timedelta(minutes=1)
    hourly = [start + timedelta(hours=h) for h in range(6)]
    assert [e for e in evaluations if e != start + timedelta(minutes=90)] == hourly
    changes = list(kpi.status_changes.order_by("changed_at").values_list("new", "changed_at"))
    # The breach was first seen at +90 min (new data); 2 hours later is +210 min, evaluated at the +4h tick.
    assert changes == [("on_track", start), ("off_track", start + timedelta(hours=4))]
    assert ZoneInfo(zone)  # the organization's zone only matters for display; the grid is UTC


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_write_one_status_change_per_decision():
    org = OrganizationFactory()
    kpis = [KpiFactory(organization=org, pending_for=timedelta(0), next_evaluation_at=T0) for _ in range(300)]
    Measurement.objects.bulk_create(Measurement(organization=org, kpi=k, at=T0, value=500) for k in kpis)
    results, barrier = [], threading.Barrier(2)

    def sweep():
        barrier.wait()
        try:
            with tenancy.for_sweep(None):  # a thread starts with no scope; the beat's task sets this one
                results.append(evaluate_due(now=T0, batch_size=50))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.evaluated for r in results) == 300
    assert StatusChange.objects.count() == StatusChange.objects.values("kpi").distinct().count() == 300


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the helper connection is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_the_sweeps_helper_connection_works_in_the_sweeps_scope():
    org = OrganizationFactory()
    kpis = [KpiFactory(organization=org, pending_for=timedelta(0), next_evaluation_at=T0) for _ in range(40)]
    Measurement.objects.bulk_create(Measurement(organization=org, kpi=k, at=T0, value=500) for k in kpis)
    scopes = []

    def opened(connection, **kwargs):
        scopes.append(tenancy.current())

    connection.close()  # the sweep's own connection opens in the scope as well
    connection_created.connect(opened)
    try:
        with tenancy.for_sweep(None):
            # A full first batch calls in the helper, on a connection of its own: outside the sweep's scope,
            # row-level security would show it nothing to claim.
            result = evaluate_due(now=T0, batch_size=10)
    finally:
        connection_created.disconnect(opened)
    assert result.evaluated == 40
    assert len(scopes) == 2 and set(scopes) == {tenancy.Scope(system=True)}
