from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from scorecards.ingestion.checker import Checker
from scorecards.ingestion.store import measurements_store
from scorecards.models import Kpi, Measurement, MeasurementRevision, NonFinite

pytestmark = pytest.mark.django_db(transaction=False)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def check(org, items):
    checker = Checker(org, now=NOW)
    checker.resolve(item[0] for item in items)
    for index, item in enumerate(items):
        checker.add(index, *item)
    return checker


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        (("nope", "2026-11-29T08:00:00Z", 1), "kpi", 'unknown KPI "nope"'),
        (("ops\x00throughput", "2026-11-29T08:00:00Z", 1), "kpi", 'unknown KPI "ops\\x00throughput"'),
        (("Ops.Throughput\n", "2026-11-29T08:00:00Z", 1), "kpi", 'unknown KPI "Ops.Throughput\\n"'),
        ((None, "2026-11-29T08:00:00Z", 1), "kpi", "must be a KPI key"),
        (("ops.throughput", "2026-11-29T08:00:00", 1), "at", "has no zone; add one, e.g. +01:00 or Z"),
        (("ops.throughput", "2026-11-29", 1), "at", "has no zone; add one, e.g. +01:00 or Z"),
        (
            ("ops.throughput", "yesterday", 1),
            "at",
            "must be an ISO 8601 time with a zone, e.g. 2026-11-29T08:00:00+01:00",
        ),
        (("ops.throughput", "2026-11-30T12:00:01Z", 1), "at", "is more than 1d in the future"),
        (("ops.throughput", "2026-11-29T08:00:00Z", True), "value", "must be a finite number"),
        (("ops.throughput", "2026-11-29T08:00:00Z", "12"), "value", "must be a finite number"),
        (("ops.throughput", "2026-11-29T08:00:00Z", NonFinite("nan")), "value", "must be a finite number"),
        (("ops.throughput", "2026-11-29T08:00:00Z", 10**400), "value", "must be a finite number"),
    ],
)
def test_it_rejects_each_bad_field_with_its_reason(tenant, item, field, message):
    checker = check(tenant.org, [item])
    assert [(p.where, p.field, p.message) for p in checker.problems] == [(0, field, message)]
    assert checker.rows == []


def test_it_rejects_the_same_point_twice_in_one_delivery(tenant):
    checker = check(
        tenant.org, [("ops.throughput", "2026-11-29T08:00:00Z", 1), ("ops.throughput", "2026-11-29T09:00:00+01:00", 2)]
    )
    assert [(p.where, p.message) for p in checker.problems] == [
        (1, "ops.throughput already has a value at this time in item 0")
    ]


def test_it_does_not_see_another_organizations_kpis(tenant, stranger_tenant):
    # Both organizations have a KPI "ops.throughput": the stranger's checker finds its own, never the tenant's.
    checker = check(stranger_tenant.org, [("ops.throughput", "2026-11-29T08:00:00Z", 1)])
    assert [row[0] for row in checker.rows] == [stranger_tenant.kpi.pk]


def test_it_stores_replaces_with_a_revision_and_marks_the_kpi(tenant):
    at = datetime(2026, 11, 29, 8, tzinfo=UTC)
    kpi = tenant.kpi
    with time_machine.travel(NOW, tick=False):
        assert (
            measurements_store(
                org=tenant.org, rows=[(kpi.pk, at, 1.0), (kpi.pk, at - timedelta(days=1), 5.0)], source="api"
            )
            == 2
        )
        measurements_store(org=tenant.org, rows=[(kpi.pk, at, 2.0)], source="csv")
        measurements_store(org=tenant.org, rows=[(kpi.pk, at, 2.0)], source="csv")  # the same again: no revision
    stored = Measurement.objects.get(kpi=kpi, at=at)
    assert (stored.value, stored.source) == (2.0, "csv")
    assert list(MeasurementRevision.objects.values_list("measurement_id", "value", "source")) == [
        (stored.pk, 1.0, "api")
    ]
    kpi = Kpi.objects.get(pk=kpi.pk)
    assert kpi.needs_evaluation and kpi.last_measured_at == at


def test_an_older_point_does_not_move_the_newest_time_back(tenant):
    at = datetime(2026, 11, 29, 8, tzinfo=UTC)
    measurements_store(org=tenant.org, rows=[(tenant.kpi.pk, at, 1.0)], source="api")
    measurements_store(org=tenant.org, rows=[(tenant.kpi.pk, at - timedelta(days=3), 1.0)], source="api")
    assert Kpi.objects.get(pk=tenant.kpi.pk).last_measured_at == at


def test_microseconds_survive_and_replace_exactly(tenant):
    at = datetime(2026, 11, 29, 8, 0, 0, 123457, tzinfo=UTC)
    measurements_store(org=tenant.org, rows=[(tenant.kpi.pk, at, 1.0)], source="api")
    measurements_store(org=tenant.org, rows=[(tenant.kpi.pk, at, 3.0)], source="api")
    assert list(Measurement.objects.filter(kpi=tenant.kpi).values_list("at", "value")) == [(at, 3.0)]
