"""`make bench`: server time to render the dependency graph page for 100 KPIs, and one KPI's neighbourhood.

Builds a throwaway test database with one organization holding 100 KPIs in 5 teams and about 150 edges (mostly
inside a team, a third across teams, a few long ones), renders the organization's graph and a middle KPI's
neighbourhood page in alternation, and prints the medians. Figures are only comparable within one run.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import timedelta

KPIS, TEAMS, ROUNDS = 100, 5, 15


def build_graph(org, owner, *, kpis: int = KPIS, teams: int = TEAMS, seed: int = 42) -> list:
    """`kpis` KPIs in `teams` teams with about 1.5 edges per KPI, acyclic by construction (an edge always goes from
    a lower index to a higher one). Shared with tests/dependencies/test_pages.py."""
    from dependencies.models import Dependency
    from scorecards.models import Kpi, Status
    from tests.factories import TeamFactory

    rng = random.Random(seed)
    team_rows = [TeamFactory(organization=org, key=f"g{t}", name=f"Graph team {t}") for t in range(teams)]
    statuses = [Status.ON_TRACK, Status.ON_TRACK, Status.AT_RISK, Status.OFF_TRACK, Status.STALE, Status.NO_DATA]
    rows = Kpi.objects.bulk_create(
        Kpi(
            organization=org,
            key=f"graph.{i:03}",
            name=f"Graph KPI {i:03}",
            team=team_rows[i % teams],
            owner=owner,
            thresholds={"warning": 90, "critical": 80},
            cadence=timedelta(days=1),
            stale_after=timedelta(days=3),
            evaluate_every=timedelta(hours=1),
            pending_for=timedelta(0),
            keep_for=timedelta(0),
            status=statuses[(i * 7) % len(statuses)],
        )
        for i in range(kpis)
    )
    pairs: set[tuple[int, int]] = {(0, teams)}  # every KPI has an edge: the others all get an upstream below
    for down in range(1, kpis):
        for _ in range(1 if down % 2 else 2):
            same_team = [u for u in range(max(0, down - 4 * teams), down) if u % teams == down % teams]
            # Usually a KPI of the same team a little earlier, else any of the last 30.
            candidates = same_team if same_team and rng.random() < 0.65 else list(range(max(0, down - 30), down))
            pairs.add((rng.choice(candidates), down))
    kinds = list(Dependency.Kind.values)
    Dependency.objects.bulk_create(
        Dependency(organization=org, upstream=rows[u], downstream=rows[d], kind=kinds[(u + d) % len(kinds)])
        for u, d in sorted(pairs)
    )
    return rows


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()

    from django.db import connection
    from django.test import Client
    from django.test.runner import DiscoverRunner
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from dependencies.models import Dependency
    from governance.models import Role
    from tests.factories import MembershipFactory, OrganizationFactory
    from tests.perf.bench.report import record

    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        org = OrganizationFactory(slug="bench")
        viewer = MembershipFactory(organization=org, role=Role.EXECUTIVE)
        kpis = build_graph(org, viewer)
        client = Client()
        client.force_login(viewer.user)
        graph, around = f"/o/{org.slug}/dependencies/", f"/o/{org.slug}/dependencies/kpis/{kpis[KPIS // 2].pk}/"
        for page in (graph, around):
            client.get(page)  # warm caches and templates
        timings: dict[str, list[float]] = {graph: [], around: []}
        for _ in range(ROUNDS):
            for page in (graph, around):
                start = time.perf_counter()
                response = client.get(page)
                timings[page].append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200
        with CaptureQueriesContext(connection) as queries:
            response = client.get(graph)
        edges = Dependency.objects.filter(organization=org).count()
        size = len(response.content) / 1024
        print(f"dependency graph render, {connection.vendor}, median of {ROUNDS} rounds:")
        whole = statistics.median(timings[graph])
        record("graph", f"graph page, {KPIS} KPIs / {edges} edges", whole, "ms", goal="< 250 ms", met=whole < 250)
        record("graph", "graph page queries", len(queries), "queries")
        record("graph", "graph page HTML", size, "KiB")
        record("graph", "one KPI's neighbourhood page", statistics.median(timings[around]), "ms")
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
