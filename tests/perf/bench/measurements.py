"""`make bench`: the measurements table at 1M and at 10M stored points (PostgreSQL, partitioned by month).

BENCH_MEASUREMENT_KPIS KPIs (default 10,000), each with a daily point for the last 100 days (1M points in all),
then 900 days more (10M, 34 monthly partitions). At each size, side by side in one run:
- ingestion: rounds of one new point per KPI through `measurements_store` (COPY, one insert ON CONFLICT), the
  API's and the pulls' path;
- the evaluation sweep over every KPI (all due), in this process;
- the reads that matter: each KPI's newest point (what the sweep reads), a KPI page's year of points one KPI at a
  time, a scorecard's sparklines (30 days of 500 KPIs at once).
The goal: neither ingestion nor the sweep slows by more than 20% from 1M to 10M. Then, at 10M, the same reads of
BRIN_SAMPLE KPIs with a BRIN index on `at` in place of the per-partition (kpi, at) B-tree (dropped in a transaction
rolled back), and ingestion with a BRIN index beside the B-tree, so that the index kept is the one measured best.
Last, the first daily roll-up at 10M once a retention covers the oldest ROLLUP_DAYS days.
The points are made by the database itself (INSERT ... SELECT over generate_series, faster still than COPY).
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from governance import tenancy  # noqa: E402
from scorecards.evaluation.sweep import evaluate_due  # noqa: E402
from scorecards.ingestion.store import measurements_store  # noqa: E402
from scorecards.models import Kpi, KpiSchedule  # noqa: E402
from scorecards.selectors import fetch_series  # noqa: E402
from scorecards.storage import measurement_partitions_ensure, measurements_roll_up  # noqa: E402
from tests.factories import KpiFactory, OrganizationFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

KPIS = int(os.environ.get("BENCH_MEASUREMENT_KPIS", "10000"))
RECENT_DAYS, ALL_DAYS = 100, 1000
ROUNDS, SWEEPS, PAGES, SPARKLINES, BRIN_SAMPLE, ROLLUP_DAYS = 5, 3, 200, 500, 200, 10
TABLE = "scorecards_measurement"


def build(now) -> tuple[object, list[int]]:
    org = OrganizationFactory(slug="bench-measurements", timezone="UTC")
    template = KpiFactory(organization=org, pending_for=timedelta(hours=2), status="on_track", next_evaluation_at=now)
    fields = {f.attname: getattr(template, f.attname) for f in Kpi._meta.concrete_fields if not f.primary_key}
    Kpi.objects.bulk_create(
        (Kpi(**fields | {"key": f"m.{i}", "name": f"M {i}"}) for i in range(KPIS - 1)), batch_size=5000
    )
    ids = list(Kpi.objects.filter(organization=org).order_by("pk").values_list("pk", flat=True))
    KpiSchedule.objects.bulk_create(
        (KpiSchedule(kpi_id=i, organization=org, next_evaluation_at=now) for i in ids if i != template.pk),
        batch_size=5000,
    )
    return org, ids


def add_days(org, ids: list[int], now, first: int, last: int) -> None:
    """A daily point for every KPI, `first` to `last` days ago (oldest first, as time passes)."""
    with tenancy.scope(system=True), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (organization_id, kpi_id, at, value, source, ingested_at) "
            "SELECT %s, k, %s - make_interval(days => d), 1000 + (k + d) %% 90, 'api', %s "
            "FROM generate_series(%s, %s, -1) AS d, unnest(%s::bigint[]) AS k",
            [org.pk, now, now, last, first, ids],
        )
    with connection.cursor() as cursor:  # outside the scope's transaction
        # As autovacuum would (it is off on the benchmark machine), and the load's WAL flushed before measuring.
        for table in (TABLE, "scorecards_kpi", "scorecards_kpischedule"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("CHECKPOINT")


def ingest(org, ids: list[int], start) -> float:
    """Points per second through measurements_store, the median of ROUNDS rounds of one new point per KPI."""
    rates = []
    for r in range(ROUNDS):
        rows = [(kpi_id, start + timedelta(minutes=r), 1050.0) for kpi_id in ids]
        began = time.perf_counter()
        measurements_store(org=org, rows=rows, source="api")
        rates.append(len(rows) / (time.perf_counter() - began))
    return statistics.median(rates)


def sweep(ids: list[int], now) -> float:
    """KPIs evaluated per second, the median of SWEEPS full sweeps over every KPI."""
    rates = []
    for s in range(SWEEPS):
        KpiSchedule.objects.filter(kpi__in=ids).update(next_evaluation_at=now, evaluated_at=None)
        began = time.perf_counter()
        with tenancy.for_sweep(None):
            evaluated = evaluate_due(now=now + timedelta(seconds=s)).evaluated
        rates.append(evaluated / (time.perf_counter() - began))
    return statistics.median(rates)


def reads(ids: list[int], now) -> dict[str, float]:
    """Milliseconds for each read that matters: every KPI's newest point, PAGES KPI pages one after the other, and
    the sparklines of SPARKLINES KPIs (all of `ids` when fewer)."""
    timings = {}
    began = time.perf_counter()
    fetch_series(ids, now - timedelta(days=3), now, newest_only=True)
    timings["newest point of every KPI"] = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    for kpi_id in ids[:: max(1, len(ids) // PAGES)][:PAGES]:
        fetch_series([kpi_id], now - timedelta(days=365), now)
    timings["a year of one KPI (KPI pages)"] = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    fetch_series(ids[:SPARKLINES], now - timedelta(days=30), now)
    timings["30 days of many KPIs (sparklines)"] = (time.perf_counter() - began) * 1000
    return timings


def settle() -> None:
    """Both sizes measured in the same state: the bulk load's dirty pages written and its statistics taken, as a table
    that grew day by day would have them (otherwise the 10M phase pays for writing out the 9M rows just loaded)."""
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
        cursor.execute("CHECKPOINT")


def phase(org, ids: list[int], now, start) -> tuple[float, float, dict[str, float]]:
    settle()
    with tenancy.scope(system=True):
        # One unmeasured pass first, for both sizes alike: caches, the temporary table, the KPIs' first evaluation.
        reads(ids, now), ingest(org, ids, start - timedelta(minutes=10)), sweep(ids, now)
        return ingest(org, ids, start), sweep(ids, now), reads(ids, now)


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        assert connection.vendor == "postgresql", "run the measurements bench with DATABASE_URL on PostgreSQL"
        now = timezone.now().replace(microsecond=0)
        with tenancy.scope(system=True):
            org, ids = build(now)
            began = time.perf_counter()
            with connection.cursor() as cursor:  # a partition for every month the points span
                for months_back in range(ALL_DAYS // 28 + 2):
                    month = "(date_trunc('month', now()) - make_interval(months => %s))::date"
                    cursor.execute(f"SELECT steerco_measurement_partition({month})", [months_back])
            measurement_partitions_ensure()
        add_days(org, ids, now, 1, RECENT_DAYS)
        built_small = time.perf_counter() - began
        small = phase(org, ids, now, now - timedelta(hours=2))
        began = time.perf_counter()
        add_days(org, ids, now, RECENT_DAYS + 1, ALL_DAYS)
        built_large = time.perf_counter() - began
        with tenancy.scope(system=True), connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*), count(DISTINCT tableoid) FROM {TABLE}")
            stored, partitions = cursor.fetchone()
        large = phase(org, ids, now, now - timedelta(hours=1))
        print(
            f"measurements, {KPIS:,} KPIs: 1M points built in {built_small:.0f} s, 10M in {built_large:.0f} s more "
            f"({stored:,} stored in {partitions} partitions):"
        )
        for name, i, unit in [("ingestion", 0, "points/s"), ("sweep", 1, "KPIs/s")]:
            record("measurements", f"{name} at 1M stored", small[i], unit)
            record("measurements", f"{name} at 10M stored", large[i], unit)
            ratio = large[i] / small[i]
            record("measurements", f"{name}: 10M rate / 1M rate", ratio, "x", goal=">= 0.8", met=ratio >= 0.8)
        for read, ms in small[2].items():
            record("measurements", f"{read} at 1M", ms, "ms")
            record("measurements", f"{read} at 10M", large[2][read], "ms")

        # BRIN on `at` in place of the per-partition (kpi, at) B-tree, measured at 10M and rolled back.
        with tenancy.scope(system=True):
            # A sample of the KPIs: without the B-tree, each KPI's read scans every KPI's points of its time range.
            sample = ids[:: len(ids) // BRIN_SAMPLE][:BRIN_SAMPLE]
            btree = reads(sample, now)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT measurement_unique_per_kpi_and_time")
                cursor.execute(f"CREATE INDEX measurement_at_brin ON {TABLE} USING brin (at)")
                cursor.execute(f"ANALYZE {TABLE}")
                brin = reads(sample, now)
                transaction.set_rollback(True)
            print(f"  BRIN (at) in place of the B-tree (kpi, at), {len(sample)} KPIs:")
            for read, ms in brin.items():
                record("measurements", f"{read}, BRIN / B-tree at 10M", ms / btree[read], "x")
            # ... and beside it: what one more index costs ingestion (both rolled back, so both insert alike).
            with transaction.atomic():
                without = ingest(org, ids, now - timedelta(minutes=30))
                transaction.set_rollback(True)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"CREATE INDEX measurement_at_brin ON {TABLE} USING brin (at)")
                with_brin = ingest(org, ids, now - timedelta(minutes=30))
                transaction.set_rollback(True)
            record("measurements", "ingestion with a BRIN (at) beside the B-tree / without", with_brin / without, "x")
            # The daily roll-up at 10M, the first time a retention covers ROLLUP_DAYS days of each KPI's history (daily
            # points, so each becomes its day's rolled-up point).
            org.raw_measurement_days = ALL_DAYS - ROLLUP_DAYS
            began = time.perf_counter()
            rolled = measurements_roll_up(org=org, now=now)
            elapsed = time.perf_counter() - began
            record("measurements", f"first roll-up of {ROLLUP_DAYS} days x {KPIS:,} KPIs", elapsed, "s")
            record("measurements", "rolled up per second", ROLLUP_DAYS * KPIS / elapsed, "points/s")
            assert rolled == 0 and measurements_roll_up(org=org, now=now) == 0
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
