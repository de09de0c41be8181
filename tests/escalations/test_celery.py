"""The escalation sweeps through a real Celery worker and the real broker (Redis in CI)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.celery import app as celery_app
from escalations.models import Notification, Task, Workstream
from escalations.tasks import advance_escalations, process_status_changes
from escalations.timing import Level, Policy
from governance.models import Role
from scorecards.models import Kpi, StatusChange
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory

pytestmark = [
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("redis://") or connection.vendor != "postgresql",
        reason="needs the real broker (Redis) and PostgreSQL row locks",
    ),
    pytest.mark.django_db(transaction=True),
]
COUNT = 300


def kpis() -> list[Kpi]:
    org = OrganizationFactory()
    lead = MembershipFactory(organization=org)
    MembershipFactory(organization=org, role=Role.EXECUTIVE)
    team = TeamFactory(organization=org, lead=lead)
    first = KpiFactory(organization=org, team=team, owner=lead)
    fields = {f.attname: getattr(first, f.attname) for f in Kpi._meta.concrete_fields if not f.primary_key}
    return [first] + Kpi.objects.bulk_create(
        Kpi(**fields | {"key": f"c.{i}", "name": f"C {i}"}) for i in range(COUNT - 1)
    )


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def purge_queue() -> None:
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def test_two_status_change_sweeps_at_once_open_each_episode_once():
    now = timezone.now()
    StatusChange.objects.bulk_create(
        StatusChange(organization_id=k.organization_id, kpi=k, old="on_track", new="off_track", changed_at=now)
        for k in kpis()
    )
    purge_queue()
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        process_status_changes.delay(), process_status_changes.delay()
        wait_until(lambda: not StatusChange.objects.filter(processed_at=None).exists(), 60, "every change")
        time.sleep(1)
    assert Workstream.objects.count() == COUNT
    assert Task.objects.filter(kind="mitigation").count() == COUNT
    assert Notification.objects.filter(kind="mitigation").count() == 2 * COUNT  # in the app and by email


def test_escalation_sweeps_delivered_twice_at_once_notify_each_level_once():
    now = timezone.now()
    policy = Policy(
        timedelta(days=2), timedelta(hours=4), 0, (Level(("team_lead", "role:executive"), timedelta(days=1)),)
    )
    Workstream.objects.bulk_create(
        Workstream(
            organization_id=k.organization_id,
            kpi=k,
            severity="off_track",
            opened_at=now - timedelta(days=2),
            policy=policy.as_json(),
            next_escalation_at=now - timedelta(minutes=1),
        )
        for k in kpis()
    )
    purge_queue()
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        for _ in range(2):
            advance_escalations.delay(), advance_escalations.delay()
        wait_until(lambda: Workstream.objects.filter(level=1).count() == COUNT, 90, "every escalation")
        time.sleep(2)
    # Each workstream told its team lead and its executive once: two tasks, four notifications.
    assert Task.objects.filter(kind="escalation").count() == 2 * COUNT
    keys = Counter(Notification.objects.values_list("dedup_key", "channel"))
    assert len(keys) == 4 * COUNT and set(keys.values()) == {1}
