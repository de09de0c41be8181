"""`make bench` (part 5): dependency propagation on a graph of 10,000 KPIs and 30,000 edges.

1,000 upstream KPIs signal at once, three ways, each in one sweep:
- 1,000 surges: process_status_changes claims them and propagates them (a dependency review per reached downstream
  KPI, grouped into one task per downstream owner, with the tasks' notifications and the upstream workstreams'
  events);
- a day later the reviews it opened fall due together: advance_escalations escalates them to the downstream team
  leads;
- two days later, 1,000 status changes into off_track: the full sweep opens 1,000 workstreams (the engine's
  per-episode work) and propagates the signals; the propagation phase is timed and counted on its own.
Reports times and queries; the propagation's queries per batch of
escalations.engine.reviews.propagation.BATCH_SIZE signals.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from dependencies.models import Dependency  # noqa: E402
from escalations.engine.reviews import propagation  # noqa: E402
from escalations.engine.sweeps import advance_escalations, process_status_changes  # noqa: E402
from escalations.models import (  # noqa: E402
    DependencyReview,
    DependencyReviewSignal,
    EscalationLevel,
    EscalationPolicy,
    Notification,
    Task,
)
from governance.models import Membership, Team  # noqa: E402
from scorecards.models import Kpi, StatusChange, SurgeSignal  # noqa: E402
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

KPIS, EDGES, SIGNALS, OWNERS, TEAMS = 10_000, 30_000, 1_000, 200, 20


class Counter:
    """Every query and its time, and the share spent inside propagation.propagate."""

    def __init__(self) -> None:
        self.queries = self.propagation_queries = 0
        self.propagation_seconds = 0.0
        self._inside = False

    def __call__(self, execute, sql, params, many, context):
        self.queries += 1
        self.propagation_queries += self._inside
        return execute(sql, params, many, context)

    @contextmanager
    def propagation(self):
        started, self._inside = time.perf_counter(), True
        try:
            yield
        finally:
            self._inside = False
            self.propagation_seconds += time.perf_counter() - started


def build(rng: random.Random) -> list[int]:
    org = OrganizationFactory(slug="bench-propagation", default_escalation="bench")
    policy = EscalationPolicy.objects.create(
        organization=org, key="bench", name="Bench", mitigation_due=timedelta(days=1), ack_timeout=timedelta(hours=4)
    )
    EscalationLevel.objects.create(
        organization=org, policy=policy, position=1, targets=["team_lead"], wait=timedelta(days=1)
    )
    owners = [MembershipFactory(organization=org).pk for _ in range(OWNERS)]
    teams = [
        Team.objects.create(organization=org, key=f"bench-{i}", name=f"Bench team {i}", lead_id=owners[i]).pk
        for i in range(TEAMS)
    ]
    template = KpiFactory(
        organization=org,
        team=Team.objects.get(pk=teams[0]),
        owner=Membership.objects.get(pk=owners[0]),
        key="p.0",
        name="P 0",
    )
    fields = {f.attname: getattr(template, f.attname) for f in Kpi._meta.concrete_fields if not f.primary_key}
    Kpi.objects.bulk_create(
        (
            Kpi(
                **fields
                | {"key": f"p.{i}", "name": f"P {i}", "team_id": teams[i % TEAMS], "owner_id": owners[i % OWNERS]}
            )
            for i in range(1, KPIS)
        ),
        batch_size=5000,
    )
    ids = list(Kpi.objects.filter(organization=org).order_by("pk").values_list("pk", flat=True))
    # Edges only from a lower to a higher position: acyclic by construction.
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < EDGES:
        a, b = rng.sample(range(KPIS), 2)
        pairs.add((ids[min(a, b)], ids[max(a, b)]))
    Dependency.objects.bulk_create(
        (Dependency(organization=org, upstream_id=up, downstream_id=down, kind="drives_demand") for up, down in pairs),
        batch_size=5000,
    )
    with_downstream = sorted({up for up, _ in pairs})
    return rng.sample(with_downstream, SIGNALS)


def run(counter: Counter, sweep) -> tuple[float, int, int, float]:
    counter.queries = counter.propagation_queries = 0
    counter.propagation_seconds = 0.0
    propagate = propagation.propagate

    def timed(**kwargs):
        with counter.propagation():
            return propagate(**kwargs)

    propagation.propagate = timed
    try:
        with connection.execute_wrapper(counter):
            started = time.perf_counter()
            sweep()
            seconds = time.perf_counter() - started
    finally:
        propagation.propagate = propagate
    return seconds, counter.queries, counter.propagation_queries, counter.propagation_seconds


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        rng, now, counter = random.Random(42), timezone.now(), Counter()
        started = time.perf_counter()
        upstream = build(rng)
        org_id = Kpi.objects.get(pk=upstream[0]).organization_id
        edges_hit = Dependency.objects.filter(upstream_id__in=upstream).count()
        print(
            f"dependency propagation, {KPIS:,} KPIs, {EDGES:,} edges, {SIGNALS:,} upstream KPIs signalling "
            f"({edges_hit:,} direct edges from them; built in {time.perf_counter() - started:.0f} s; "
            f"{connection.vendor}):"
        )
        batches = -(-SIGNALS // propagation.BATCH_SIZE)

        SurgeSignal.objects.bulk_create(
            SurgeSignal(organization_id=org_id, kpi_id=pk, at=now, previous=100, current=145, change=0.45)
            for pk in upstream
        )
        seconds, queries, _, _ = run(counter, lambda: process_status_changes(now=now))
        opened = DependencyReview.objects.count()
        grouped = Task.objects.filter(kind="dependency_review").count()
        print(f"  {SIGNALS:,} surges -> {opened:,} reviews in {grouped:,} owner tasks, {edges_hit:,} edges, one sweep:")
        record("propagation", f"{SIGNALS:,} surges propagated", seconds, "s")
        record("propagation", f"{SIGNALS:,} surges, queries", queries, "queries")

        later = now + timedelta(days=1)
        seconds, queries, _, _ = run(counter, lambda: advance_escalations(now=later))
        escalated = Task.objects.filter(kind="escalation").count()
        print(f"  {opened:,} unanswered reviews due at once -> {escalated:,} escalation tasks:")
        record("propagation", f"{opened:,} reviews escalated", seconds, "s")
        record("propagation", f"{opened:,} reviews escalated, queries", queries, "queries")

        changed = now + timedelta(days=2)
        StatusChange.objects.bulk_create(
            StatusChange(organization_id=org_id, kpi_id=pk, old="on_track", new="off_track", changed_at=changed)
            for pk in upstream
        )
        seconds, queries, propagation_queries, propagation_seconds = run(
            counter, lambda: process_status_changes(now=changed)
        )
        second = DependencyReview.objects.count() - opened
        second_tasks = Task.objects.filter(kind="dependency_review").count() - grouped
        print(f"  {SIGNALS:,} changes into off_track -> workstreams, {second:,} reviews, {second_tasks:,} owner tasks:")
        record("propagation", f"{SIGNALS:,} status changes, whole sweep", seconds, "s")
        record("propagation", f"{SIGNALS:,} status changes, queries", queries, "queries")
        record("propagation", "of which propagation", propagation_seconds, "s")
        record("propagation", "propagation queries", propagation_queries, "queries")
        record(
            "propagation",
            f"propagation queries per batch of {propagation.BATCH_SIZE}",
            propagation_queries / batches,
            "queries",
        )
        deliveries, notifications = DependencyReviewSignal.objects.count(), Notification.objects.count()
        print(f"  rows: {deliveries:,} signal deliveries, {notifications:,} notifications to {OWNERS} owners")
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
