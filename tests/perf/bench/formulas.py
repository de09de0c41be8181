"""`make bench`: 10,000 calculated KPIs recomputed after one input changes: time and queries.

Builds a throwaway test database with one organization, one input KPI with 60 days of daily data and 10,000
calculated KPIs over it (four shapes of formula: a product, a 7-day sum, a 4-week average, a ratio; every text
different, so each is parsed), keeps their "computed from" edges, then stores one new input point and times the
recomputation that follows it (dependencies.formulas.formulas_recompute: the reads, the evaluation of every
formula and the one write of 10,000 values), with its queries counted, next to the time the write alone takes.
Figures are only comparable within one run.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime, timedelta

CALCULATED, DAYS, ROUNDS = 10_000, 60, 3


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()

    from django.db import connection
    from django.test.runner import DiscoverRunner
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from dependencies.formulas import formula_edges_sync, formulas_recompute
    from governance import tenancy
    from scorecards.ingestion.store import measurements_store
    from scorecards.models import Kpi, Measurement
    from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory
    from tests.perf.bench.report import record

    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        with tenancy.scope(system=True):
            org = OrganizationFactory(slug="bench")
            owner = MembershipFactory(organization=org)
            team = TeamFactory(organization=org, key="calc")

            def kpi(key: str, formula: str = "") -> Kpi:
                return Kpi(
                    organization=org,
                    key=key,
                    name=key,
                    team=team,
                    owner=owner,
                    unit="EUR",
                    formula=formula,
                    thresholds={"warning": 90, "critical": 80},
                    cadence=timedelta(days=1),
                    stale_after=timedelta(days=3),
                    evaluate_every=timedelta(hours=1),
                    pending_for=timedelta(0),
                    keep_for=timedelta(0),
                )

            shapes = [
                "bench.input * {n}",
                "sum(bench.input, 7d) / {n}",
                "avg(bench.input, 4w) + {n}",
                "(bench.input - {n}) / bench.input * 100",
            ]
            source = kpi("bench.input")
            source.save()
            Kpi.objects.bulk_create(
                [kpi(f"bench.calc.{i:05}", shapes[i % 4].format(n=i + 1)) for i in range(CALCULATED)],
                batch_size=2000,
            )
            start = datetime(2026, 9, 1, tzinfo=UTC)
            Measurement.objects.bulk_create(
                Measurement(organization=org, kpi=source, at=start + timedelta(days=d), value=1000 + d)
                for d in range(DAYS)
            )
            Kpi.objects.filter(pk=source.pk).update(last_measured_at=start + timedelta(days=DAYS - 1))
            began = time.perf_counter()
            created, _ = formula_edges_sync(org=org, actor=None)
            edges_ms = (time.perf_counter() - began) * 1000

            timings, queries = [], 0
            for r in range(ROUNDS):
                at = start + timedelta(days=DAYS + r)
                measurements_store(org=org, rows=[(source.pk, at, 2000.0 + r)], source="api")
                with CaptureQueriesContext(connection) as captured:
                    began = time.perf_counter()
                    result = formulas_recompute(org=org, kpi_ids=[source.pk])
                    timings.append(time.perf_counter() - began)
                queries = len(captured)
                assert result.computed == CALCULATED, result
            assert Measurement.objects.filter(kpi__formula__gt="", at=at).count() == CALCULATED
            # Side by side: the one write alone (the same 10,000 values at a new moment), which every way in shares.
            ids = list(Kpi.objects.filter(organization=org).exclude(formula="").values_list("pk", flat=True))
            store_only = []
            for r in range(ROUNDS):
                at = start + timedelta(days=DAYS + ROUNDS + r)
                began = time.perf_counter()
                measurements_store(org=org, rows=[(pk, at, 1.0 + r) for pk in ids], source="formula")
                store_only.append(time.perf_counter() - began)

        seconds = statistics.median(timings)
        print(f"calculated KPIs, {connection.vendor}, median of {ROUNDS} recomputations:")
        record("formulas", f"computed-from edges kept for {CALCULATED:,} formulas", edges_ms, "ms")
        record(
            "formulas",
            f"{CALCULATED:,} calculated KPIs recomputed after one input changes",
            seconds,
            "s",
            goal="< 10 s",
            met=seconds < 10,
        )
        record("formulas", "recomputed KPIs per second", CALCULATED / seconds, "KPIs/s")
        stored = statistics.median(store_only)
        record("formulas", f"storing {CALCULATED:,} values alone (measurements_store)", stored, "s")
        record("formulas", "recomputation / storing alone", seconds / stored, "x")
        record("formulas", "queries for one recomputation", queries, "queries", goal="< 25", met=queries < 25)
        assert created == CALCULATED
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
