"""Measurements kept over time: monthly partitions made ahead (PostgreSQL), and raw points past an organization's
retention rolled up into one point per KPI and local day, by the KPI's aggregation."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import ProgrammingError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.utils import timezone

from governance import tenancy
from scorecards import storage
from scorecards.models import Kpi, Measurement, MeasurementRevision
from scorecards.selectors import fetch_series
from scorecards.tasks import create_measurement_partitions, roll_up_measurements
from tests.conftest import RUNTIME_ROLE, as_web_role
from tests.factories import KpiFactory, OrganizationFactory

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
OLD_DAY = datetime(2026, 9, 1, tzinfo=UTC)  # 97 days before NOW; Berlin is UTC+2 then
TABLE = Measurement._meta.db_table
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's")


def points(kpi) -> list[tuple[datetime, float, str]]:
    return list(Measurement._base_manager.filter(kpi=kpi).order_by("at").values_list("at", "value", "source"))


def add(kpi, at: datetime, value: float, source: str = "api") -> Measurement:
    return Measurement.objects.create(organization=kpi.organization, kpi=kpi, at=at, value=value, source=source)


def partition_of(measurement: Measurement) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM scorecards_measurement WHERE id = %s", [measurement.pk])
        return cursor.fetchone()[0]


def partitions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass", [TABLE])
        return {name for (name,) in cursor.fetchall()}


@postgres_only
@pytest.mark.django_db(transaction=True)
@override_settings(MEASUREMENT_PARTITIONS_AHEAD=30)
def test_two_beats_at_once_make_each_coming_months_partition_once():
    results, barrier = [], threading.Barrier(2)

    def beat():
        barrier.wait()
        try:
            results.append(create_measurement_partitions()["created"])
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = results[0] + results[1]
    assert len(made) == len(set(made))
    month = datetime.now(UTC).replace(day=1)
    for _ in range(31):
        assert f"scorecards_measurement_{month:%Y_%m}" in partitions()
        month = (month + timedelta(days=32)).replace(day=1)
    assert create_measurement_partitions() == {"created": []}


@postgres_only
@pytest.mark.django_db
def test_a_point_beyond_the_partitions_waits_in_the_default_one_then_moves_into_its_month():
    kpi = KpiFactory()
    far = add(kpi, datetime(2041, 3, 5, tzinfo=UTC), 7.0)
    assert partition_of(far) == "scorecards_measurement_default"
    with connection.cursor() as cursor:
        cursor.execute("SELECT steerco_measurement_partition('2041-03-01')")
    assert partition_of(far) == "scorecards_measurement_2041_03"
    assert Measurement.objects.get(pk=far.pk).value == 7.0


@postgres_only
@pytest.mark.django_db
def test_a_partition_read_by_its_name_shows_only_the_organizations_own_points():
    mine, theirs = KpiFactory(), KpiFactory()
    add(mine, NOW, 1.0), add(theirs, NOW, 2.0)
    with tenancy.scope(organization=mine.organization_id), connection.cursor() as cursor:
        cursor.execute(f"SELECT kpi_id FROM scorecards_measurement_{NOW:%Y_%m}")
        assert cursor.fetchall() == [(mine.pk,)]
        cursor.execute("SELECT count(*) FROM scorecards_measurement_default")
        assert cursor.fetchone() == (0,)


@postgres_only
@pytest.mark.django_db
def test_the_web_role_may_not_make_partitions():
    refused = pytest.raises(ProgrammingError, match="permission denied")
    with as_web_role(), refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT steerco_measurement_partitions(1)")


@pytest.mark.django_db
def test_it_rolls_up_old_raw_points_into_one_per_kpi_and_local_day_by_the_kpis_aggregation():
    org = OrganizationFactory(timezone="Europe/Berlin", raw_measurement_days=30)
    sums, lasts, averages = (KpiFactory(organization=org, aggregate_fn=fn) for fn in ("sum", "last", "avg"))
    for kpi in (sums, lasts, averages):
        for hour, value in [(7, 1.0), (12, 2.0), (21, 6.0), (22, 10.0)]:  # 22:00 UTC is the next day in Berlin
            add(kpi, OLD_DAY + timedelta(hours=hour), value)
        add(kpi, NOW - timedelta(days=2), 5.0)
        add(kpi, NOW - timedelta(days=2, hours=1), 4.0)
    revised = Measurement._base_manager.get(kpi=sums, at=OLD_DAY + timedelta(hours=7))
    MeasurementRevision.objects.create(organization=org, measurement=revised, value=0.5, source="api", ingested_at=NOW)

    assert storage.measurements_roll_up(org=org, now=NOW) == 3 * 2

    recent = [(NOW - timedelta(days=2, hours=1), 4.0, "api"), (NOW - timedelta(days=2), 5.0, "api")]
    day_end, next_day = OLD_DAY + timedelta(hours=21), OLD_DAY + timedelta(hours=22)
    assert points(sums) == [(day_end, 9.0, "rollup"), (next_day, 10.0, "rollup"), *recent]
    assert points(lasts) == [(day_end, 6.0, "rollup"), (next_day, 10.0, "rollup"), *recent]
    assert points(averages) == [(day_end, 3.0, "rollup"), (next_day, 10.0, "rollup"), *recent]
    assert not MeasurementRevision.objects.exists()  # a removed point's history goes with it
    # The charts and the evaluation windows read the day's sum where they read its points before.
    series = fetch_series([sums.pk], OLD_DAY - timedelta(days=1), OLD_DAY + timedelta(days=2))
    assert sum(value for _, value in series[sums.pk]) == 19.0


@pytest.mark.django_db
def test_rolling_up_twice_changes_nothing_more_and_a_late_point_joins_its_rolled_up_day():
    org = OrganizationFactory(timezone="UTC", raw_measurement_days=30)
    kpi = KpiFactory(organization=org, aggregate_fn="sum")
    for hour in range(4):
        add(kpi, OLD_DAY + timedelta(hours=hour), 1.0)
    storage.measurements_roll_up(org=org, now=NOW)
    once = points(kpi)
    assert storage.measurements_roll_up(org=org, now=NOW) == 0
    assert points(kpi) == once == [(OLD_DAY + timedelta(hours=3), 4.0, "rollup")]

    add(kpi, OLD_DAY + timedelta(hours=5), 2.0)  # a late delivery
    storage.measurements_roll_up(org=org, now=NOW)
    assert points(kpi) == [(OLD_DAY + timedelta(hours=5), 6.0, "rollup")]


@pytest.mark.django_db
def test_only_organizations_that_limit_raw_points_are_rolled_up():
    keeping = KpiFactory(organization=OrganizationFactory(raw_measurement_days=None), aggregate_fn="sum")
    limiting = KpiFactory(organization=OrganizationFactory(raw_measurement_days=7), aggregate_fn="sum")
    for kpi in (keeping, limiting):
        add(kpi, OLD_DAY + timedelta(hours=1), 1.0), add(kpi, OLD_DAY + timedelta(hours=2), 1.0)

    assert roll_up_measurements() == {"organizations": 1, "removed": 1}

    assert len(points(keeping)) == 2
    assert [value for _, value, _ in points(limiting)] == [2.0]


@pytest.mark.django_db
def test_the_command_rolls_up_one_organization(capsys):
    org = OrganizationFactory(slug="acme", raw_measurement_days=7)
    kpi = KpiFactory(organization=org, aggregate_fn="max")
    add(kpi, OLD_DAY, 3.0), add(kpi, OLD_DAY + timedelta(hours=1), 1.0)
    call_command("roll_up_measurements", org="acme")
    assert "1 point(s) removed" in capsys.readouterr().out
    assert [value for _, value, _ in points(kpi)] == [3.0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_roll_ups_at_once_give_the_same_result_as_one(monkeypatch):
    monkeypatch.setattr(storage, "KPIS_PER_TRANSACTION", 3)  # many transactions, so the two runs interleave
    org = OrganizationFactory(timezone="UTC", raw_measurement_days=30)
    kpis = [KpiFactory(organization=org, aggregate_fn="sum") for _ in range(20)]
    Measurement.objects.bulk_create(
        Measurement(organization=org, kpi=kpi, at=OLD_DAY + timedelta(hours=h), value=1.0)
        for kpi in kpis
        for h in range(72)
    )
    results, barrier = [], threading.Barrier(2)

    def run():
        barrier.wait()
        try:
            with tenancy.scope(system=True):
                results.append(storage.measurements_roll_up(org=org, now=NOW))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 20 * (72 - 3)
    for kpi in kpis:
        assert [value for _, value, _ in points(kpi)] == [24.0, 24.0, 24.0]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_stored_points_into_their_months_and_back():
    kpi = KpiFactory()
    stored = [add(kpi, datetime(2025, month, 3, tzinfo=UTC), float(month)) for month in (1, 2, 7)]
    executor = MigrationExecutor(connection)
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")  # migrations run as the owner
    try:
        executor.migrate([("scorecards", "0015_kpi_series_version")])
        assert partitions() == set()
        assert add(kpi, datetime(2025, 8, 1, tzinfo=UTC), 8.0).pk > stored[-1].pk
        executor.loader.build_graph()
        executor.migrate([("scorecards", "0016_measurement_partitions")])
    finally:
        with connection.cursor() as cursor:
            # The rebuilt table is new: the suite's role may empty it between tests, as tests/conftest.py grants.
            cursor.execute(f"GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO {RUNTIME_ROLE}")
            cursor.execute(f"SET ROLE {RUNTIME_ROLE}")
    assert [partition_of(m) for m in stored] == [
        "scorecards_measurement_2025_01",
        "scorecards_measurement_2025_02",
        "scorecards_measurement_2025_07",
    ]
    assert [value for _, value, _ in points(kpi)] == [1.0, 2.0, 7.0, 8.0]
    assert add(kpi, datetime(2025, 8, 2, tzinfo=UTC), 9.0).pk > max(m.pk for m in stored) + 1  # the ids go on


@pytest.mark.django_db
def test_a_day_rolled_up_inside_the_sparklines_window_moves_the_series_version():
    """The scorecard keeps rendered rows keyed on Kpi.series_version (scorecards.row_cache): a retention shorter than
    the sparkline's 30 days rolls up points a kept row drew, and the row must be drawn again."""
    now = timezone.now()
    org = OrganizationFactory(timezone="UTC", raw_measurement_days=7)
    drawn, older = (KpiFactory(organization=org, aggregate_fn="sum") for _ in range(2))
    for kpi, days in ((drawn, 10), (older, 40)):
        day = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
        add(kpi, day + timedelta(hours=1), 1.0), add(kpi, day + timedelta(hours=2), 1.0)
    versions = dict(Kpi.objects.filter(organization=org).values_list("pk", "series_version"))

    assert storage.measurements_roll_up(org=org, now=now) == 2

    after = dict(Kpi.objects.filter(organization=org).values_list("pk", "series_version"))
    assert (after[drawn.pk], after[older.pk]) == (versions[drawn.pk] + 1, versions[older.pk])
