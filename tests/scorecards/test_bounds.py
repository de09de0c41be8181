"""Measurements are bounded in time and magnitude at every way in, and a stored value outside the bounds (from
before them) breaks no page, no API answer and no evaluation sweep."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.urls import reverse

from scorecards.evaluation.sweep import evaluate_due
from scorecards.ingestion.checker import Checker
from scorecards.models import Kpi, KpiSchedule, Measurement
from tests.factories import KpiFactory
from tests.scorecards.factories import MeasurementFactory
from tests.scorecards.ingestion.test_imports import HEADER, problems, run
from tests.scorecards.test_api import call, point, post

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
OUT_OF_BOUNDS = [
    (point(at="0001-01-01T00:00:00+14:00"), "at", "is before 1970"),
    (point(at="1969-12-31T23:59:59Z"), "at", "is before 1970"),
    (point(at="2026-11-30T12:00:01Z"), "at", "is more than 1d in the future"),
    (point(value=1.7e308), "value", "must be between -1e+15 and 1e+15"),
    (point(value=-2e15), "value", "must be between -1e+15 and 1e+15"),
]


@pytest.fixture(autouse=True)
def frozen():
    cache.clear()
    with time_machine.travel(NOW, tick=False):
        yield


def strict_json(content: bytes):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(content, parse_constant=refuse)


def test_the_api_refuses_each_time_and_value_out_of_bounds_by_item_and_stores_nothing(tenant):
    response = post(tenant.token, [item for item, _, _ in OUT_OF_BOUNDS] + [point(at="1970-01-01T00:00:00Z")])
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": f"measurements[{index}].{field}", "message": message}
        for index, (_, field, message) in enumerate(OUT_OF_BOUNDS)
    ]
    assert not Measurement.objects.exists()


def test_a_csv_import_refuses_each_line_out_of_bounds_by_line(tenant):
    body = "".join(f"{item['kpi']},{item['at']},{item['value']!r}\n" for item, _, _ in OUT_OF_BOUNDS)
    job = run(tenant, HEADER + body)
    assert job.state == "failed"
    assert problems(job) == [(line, field, message) for line, (_, field, message) in enumerate(OUT_OF_BOUNDS, 2)]
    assert not Measurement._base_manager.exists()


@pytest.fixture
def stored_out_of_bounds(tenant):
    """What ingestion let through before the bounds: a point in year 0 (UTC), and two huge values whose sum is not
    finite, on a KPI that sums a week; the KPI's value already infinite from an earlier sweep."""
    kpi = KpiFactory(
        organization=tenant.org,
        team=tenant.team,
        owner=tenant.lead,
        key="ops.huge",
        aggregate_fn="sum",
        aggregate_window=timedelta(days=7),
    )
    for at, value in [(NOW - timedelta(hours=2), 1.7e308), (NOW - timedelta(hours=1), 1.7e308), (NOW, 5)]:
        MeasurementFactory(kpi=kpi, at=at, value=value)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO scorecards_measurement (organization_id, kpi_id, at, value, source, ingested_at) "
                "VALUES (%s, %s, '0001-01-01T00:00:00+14:00', 1, 'api', now())",
                [tenant.org.pk, kpi.pk],
            )
    else:
        MeasurementFactory(kpi=kpi, at=datetime(1, 1, 1, tzinfo=UTC), value=1)
    Kpi.objects.filter(pk=kpi.pk).update(last_value=math.inf, last_measured_at=NOW)
    KpiSchedule.objects.filter(kpi=kpi).update(needs_evaluation=True)
    return kpi


def test_a_pull_refuses_a_row_before_1970_by_row(tenant):
    checker = Checker(tenant.org, naive_tz=tenant.org.tzinfo, unit="row")
    checker.add(1, "ops.throughput", date(1969, 12, 31), 1)
    checker.add(2, "ops.throughput", "0001-01-01T00:00:00+14:00", 1)
    checker.add(3, "ops.throughput", date(2026, 11, 28), 1e16)
    assert [(p.where, p.field, p.message) for p in checker.problems] == [
        (1, "at", "is before 1970"),
        (2, "at", "is before 1970"),
        (3, "value", "must be between -1e+15 and 1e+15"),
    ]


def test_a_stored_value_out_of_bounds_breaks_no_page(tenant, stored_out_of_bounds):
    kpi, client = stored_out_of_bounds, tenant.client(tenant.member)
    page = client.get(reverse("scorecards:kpi_detail", args=[tenant.org.slug, kpi.pk]))
    assert page.status_code == 200 and not re.search(r"\binf\b", page.content.decode())
    assert client.get(reverse("scorecards:kpi_detail", args=[tenant.org.slug, kpi.pk]) + "?page=2").status_code == 200
    assert client.get(reverse("scorecards:kpi_list", args=[tenant.org.slug])).status_code == 200


def test_a_stored_value_out_of_bounds_breaks_no_api_answer_and_no_json(tenant, stored_out_of_bounds):
    measurements = call(tenant.token, "get", "kpis/ops.huge/measurements")
    assert measurements.status_code == 200
    assert [m["value"] for m in strict_json(measurements.content)] == [5]
    kpis = call(tenant.token, "get", "kpis")
    assert kpis.status_code == 200
    assert {k["key"]: k["value"] for k in strict_json(kpis.content)}["ops.huge"] is None


def test_the_sweep_reads_past_stored_values_out_of_bounds_and_sums_within_them(tenant, stored_out_of_bounds):
    huge, other = stored_out_of_bounds, tenant.kpi
    MeasurementFactory(kpi=huge, at=NOW - timedelta(hours=3), value=1e15)
    Measurement._base_manager.filter(kpi=huge, value=5).update(value=1e15)
    KpiSchedule.objects.filter(kpi=other).update(needs_evaluation=True)
    MeasurementFactory(kpi=other, at=NOW, value=1)
    # Within the bounds the sum stays finite: the bound is what makes a window's sum safe.
    result = evaluate_due(now=NOW)
    assert result.errors == 0 and result.evaluated >= 2
    assert Kpi.objects.get(pk=huge.pk).last_value == 2e15
    assert Kpi.objects.get(pk=other.pk).error == ""


def test_a_kpi_whose_sum_is_not_finite_records_the_error_and_the_sweep_goes_on(tenant, stored_out_of_bounds, settings):
    settings.MEASUREMENT_MAX_ABS = math.inf  # as before the bound: the two huge values are read and summed
    KpiSchedule.objects.filter(kpi=tenant.kpi).update(needs_evaluation=True)
    MeasurementFactory(kpi=tenant.kpi, at=NOW, value=1)
    result = evaluate_due(now=NOW)
    assert result.errors == 1 and result.evaluated >= 1
    assert (
        Kpi.objects.get(pk=stored_out_of_bounds.pk).error == "ValueError: the sum of the window is not a finite number"
    )
    assert Kpi.objects.get(pk=tenant.kpi.pk).last_value == 1
