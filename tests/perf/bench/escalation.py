"""`make bench` (part 4): the escalation sweep with 10,000 open workstreams, 2,000 of them due at once.

Each due workstream reaches its first level (the team lead plus the executives): tasks, timeline events and
in-app + email notifications are written. Reports the sweep's time (and the CPU time of this process, which a busy
machine disturbs less), its queries per batch of BATCH_SIZE, and notifications created per second.

A batch reads what it needs and writes in bulk, so its queries do not depend on BATCH_SIZE: about a dozen (it
was two per workstream, about 410 per batch, before the sweep gathered its events and webhook deliveries).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from escalations.engine.sweeps import BATCH_SIZE, advance_escalations  # noqa: E402
from escalations.engine.timing import Level, Policy  # noqa: E402
from escalations.models import Notification, Task, Workstream  # noqa: E402
from governance.models import Role  # noqa: E402
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

OPEN, DUE = 10_000, 2_000


def build(now) -> None:
    org = OrganizationFactory(slug="bench-escalation")
    lead = MembershipFactory(organization=org)
    for _ in range(3):
        MembershipFactory(organization=org, role=Role.EXECUTIVE)
    team = TeamFactory(organization=org, lead=lead)
    template = KpiFactory(organization=org, team=team, owner=lead)
    from scorecards.models import Kpi

    fields = {f.attname: getattr(template, f.attname) for f in Kpi._meta.concrete_fields if not f.primary_key}
    Kpi.objects.bulk_create(
        (Kpi(**fields | {"key": f"e.{i}", "name": f"E {i}"}) for i in range(OPEN - 1)), batch_size=5000
    )
    policy = Policy(
        timedelta(days=2), timedelta(hours=4), 0, (Level(("team_lead", "role:executive"), timedelta(days=1)),)
    ).as_json()
    Workstream.objects.bulk_create(
        (
            Workstream(
                organization=org,
                kpi_id=kpi_id,
                severity="off_track",
                opened_at=now - timedelta(days=2),
                policy=policy,
                policy_key="bench",
                next_escalation_at=now - timedelta(minutes=1) if i < DUE else now + timedelta(days=1),
            )
            for i, kpi_id in enumerate(Kpi.objects.filter(organization=org).values_list("pk", flat=True))
        ),
        batch_size=5000,
    )


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        now = timezone.now()
        build(now)
        queries = []
        with connection.execute_wrapper(lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)):
            started, cpu = time.perf_counter(), time.process_time()
            counts = advance_escalations(now=now)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        notifications = Notification.objects.count()
        batches = -(-DUE // BATCH_SIZE)
        print(f"escalation sweep, {OPEN:,} open workstreams, {DUE:,} due, {counts.escalated:,} levels notified:")
        record("escalation", f"sweep of {DUE:,} due workstreams", seconds, "s")
        record("escalation", "CPU in this process", cpu, "s")
        record("escalation", f"queries per batch of {BATCH_SIZE}", len(queries) / batches, "queries")
        record("escalation", "tasks created", Task.objects.count(), "tasks")
        record("escalation", "notifications created per second", notifications / seconds, "notifications/s")
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
