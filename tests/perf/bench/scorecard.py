"""`make bench`: server time to render the scorecard page, measured side by side in one run.

Builds a throwaway test database with one organization holding 500 KPIs of 90 daily points each, then
renders the page for the first 50 KPIs (one team) and for all 500 in alternation, and prints the medians
and their ratio; then all 500 with an empty cache, each row rendered again
(scorecards.row_cache). Figures are only comparable within one run: the machine is noisy.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from governance.models import Role  # noqa: E402
from scorecards.models import Kpi, Measurement, Status  # noqa: E402
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

KPIS, DAYS, ROUNDS = 500, 90, 15


def build() -> tuple[Client, str, int]:
    org = OrganizationFactory(slug="bench")
    viewer = MembershipFactory(organization=org, role=Role.EXECUTIVE)
    teams = [TeamFactory(organization=org) for _ in range(10)]
    now = timezone.now()
    statuses = list(Status.values)
    kpis = Kpi.objects.bulk_create(
        Kpi(
            organization=org,
            key=f"k.{i}",
            name=f"KPI {i:03}",
            team=teams[i // 50],
            owner=viewer,
            unit="units",
            target_value=100,
            thresholds={"warning": 90, "critical": 80},
            cadence=timedelta(days=1),
            stale_after=timedelta(days=3),
            evaluate_every=timedelta(hours=1),
            pending_for=timedelta(0),
            keep_for=timedelta(0),
            status=statuses[i % len(statuses)],
            last_value=95,
            last_measured_at=now,
        )
        for i in range(KPIS)
    )
    Measurement.objects.bulk_create(
        (
            Measurement(organization=org, kpi=kpi, at=now - timedelta(days=d), value=90 + (d * 7 + kpi.pk) % 20)
            for kpi in kpis
            for d in range(DAYS)
        ),
        batch_size=5000,
    )
    client = Client()
    client.force_login(viewer.user)
    return client, f"/o/{org.slug}/kpis/", teams[0].pk


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        client, url, first_team = build()
        small, large = f"{url}?team={first_team}", url
        client.get(small), client.get(large)  # warm caches and templates
        timings: dict[str, list[float]] = {small: [], large: [], "cold": []}
        for _ in range(ROUNDS):
            for page in (small, large, "cold"):
                if page == "cold":
                    cache.clear()  # every row rendered again, as after the whole organization's data changed
                start = time.perf_counter()
                response = client.get(large if page == "cold" else page)
                timings[page].append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200
        with CaptureQueriesContext(connection) as queries:
            client.get(large)
        m_small, m_large = statistics.median(timings[small]), statistics.median(timings[large])
        print(f"scorecard render, {connection.vendor}, median of {ROUNDS} rounds:")
        record("scorecard", "render, 50 KPIs", m_small, "ms")
        record("scorecard", "render, 500 KPIs", m_large, "ms", goal="< 250 ms", met=m_large < 250)
        record("scorecard", "render, 500 KPIs, no row kept", statistics.median(timings["cold"]), "ms")
        record("scorecard", "queries, 500 KPIs", len(queries), "queries")
        record("scorecard", "ratio 500 / 50 KPIs (10x the KPIs)", m_large / m_small, "x")
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
