"""The escalation sweeps through a real Celery worker and the real broker (Redis in CI)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from config.celery import app as celery_app
from escalations.engine.timing import Level, Policy
from escalations.models import Notification, Task, Workstream, WorkstreamEvent
from escalations.tasks import advance_escalations, deliver_notifications, process_status_changes
from governance.models import Role
from governance.services.api_tokens import api_token_create
from scorecards.models import Kpi, StatusChange
from scorecards.tasks import evaluate_kpis
from tests.conftest import worker_settled
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory
from tests.scorecards.evaluation.test_sweep_celery import _subprocess_env, _worker

pytestmark = [
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("redis://") or connection.vendor != "postgresql",
        reason="needs the real broker (Redis) and PostgreSQL row locks",
    ),
    pytest.mark.django_db(transaction=True),
]
COUNT = 300


def kpis(count: int = COUNT) -> list[Kpi]:
    org = OrganizationFactory()
    lead = MembershipFactory(organization=org)
    MembershipFactory(organization=org, role=Role.EXECUTIVE)
    team = TeamFactory(organization=org, lead=lead)
    # Owned by someone other than the lead: four eyes keeps an owner out of their own escalation.
    first = KpiFactory(organization=org, team=team, owner=MembershipFactory(organization=org))
    fields = {f.attname: getattr(first, f.attname) for f in Kpi._meta.concrete_fields if not f.primary_key}
    return [first] + Kpi.objects.bulk_create(
        (Kpi(**fields | {"key": f"c.{i}", "name": f"C {i}"}) for i in range(count - 1)), batch_size=5000
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
        worker_settled()
    assert Workstream.objects.count() == COUNT
    assert Task.objects.filter(kind="mitigation").count() == COUNT
    assert Notification.objects.filter(kind="mitigation").count() == 2 * COUNT  # in the app and by email


def due_workstreams(count: int) -> None:
    """`count` workstreams whose first level (the team lead and the executive) is due."""
    now = timezone.now()
    policy = Policy(
        timedelta(days=2), timedelta(hours=4), 0, (Level(("team_lead", "role:executive"), timedelta(days=1)),)
    )
    Workstream.objects.bulk_create(
        (
            Workstream(
                organization_id=k.organization_id,
                kpi=k,
                severity="off_track",
                opened_at=now - timedelta(days=2),
                policy=policy.as_json(),
                next_escalation_at=now - timedelta(minutes=1),
            )
            for k in kpis(count)
        ),
        batch_size=5000,
    )


def test_escalation_sweeps_delivered_twice_at_once_notify_each_level_once():
    due_workstreams(COUNT)
    purge_queue()
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        for _ in range(2):
            advance_escalations.delay(), advance_escalations.delay()
        wait_until(lambda: Workstream.objects.filter(level=1).count() == COUNT, 90, "every escalation")
        worker_settled()
    # Each workstream told its team lead and its executive once: two tasks, four notifications.
    assert Task.objects.filter(kind="escalation").count() == 2 * COUNT
    keys = Counter(Notification.objects.values_list("dedup_key", "channel"))
    assert len(keys) == 4 * COUNT and set(keys.values()) == {1}


def killed_mid_sweep(task, done, total: int) -> None:
    """Sends `task` to a worker process of our own, SIGKILLs it (and its pool child) once the first batches are
    committed (`done()` counts what they did), and starts another worker after the visibility timeout, which gets
    the unacknowledged task again and finishes the sweep."""
    purge_queue()
    env = _subprocess_env() | {"CELERY_VISIBILITY_TIMEOUT": "3"}
    worker = _worker(env)
    try:
        task.delay()
        wait_until(lambda: done() > 0, 90, "the sweep to start")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        assert done() < total, "the sweep finished before it could be killed; make it bigger"
        time.sleep(4)  # past the visibility timeout: the unacknowledged task becomes visible again
        worker = _worker(env)
        wait_until(lambda: done() == total, 180, "the redelivered sweep")
        time.sleep(1)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def test_an_escalation_sweep_killed_mid_batch_is_redelivered_and_notifies_each_level_once():
    count = 6000
    due_workstreams(count)
    killed_mid_sweep(advance_escalations, Workstream.objects.filter(level=1).count, count)
    # Each workstream told its team lead and its executive once, and its timeline says so once.
    assert Task.objects.filter(kind="escalation").count() == 2 * count
    assert Task.objects.values("workstream", "assignee").distinct().count() == 2 * count
    assert Notification.objects.filter(kind="escalation").count() == 4 * count  # in the app and by email
    assert Notification.objects.values("workstream", "recipient", "channel").distinct().count() == 4 * count
    assert WorkstreamEvent.objects.filter(verb="escalated").count() == count
    assert WorkstreamEvent.objects.values("workstream").distinct().count() == count
    assert not Workstream.objects.exclude(next_escalation_at__gt=timezone.now()).exists()


def test_a_status_change_sweep_killed_mid_batch_is_redelivered_and_opens_each_episode_once():
    count = 4000
    now = timezone.now()
    StatusChange.objects.bulk_create(
        (
            StatusChange(organization_id=k.organization_id, kpi=k, old="on_track", new="off_track", changed_at=now)
            for k in kpis(count)
        ),
        batch_size=5000,
    )
    killed_mid_sweep(process_status_changes, StatusChange.objects.exclude(processed_at=None).count, count)
    assert Workstream.objects.count() == Workstream.objects.values("kpi").distinct().count() == count
    assert Task.objects.filter(kind="mitigation").count() == count
    assert Notification.objects.filter(kind="mitigation").count() == 2 * count
    assert WorkstreamEvent.objects.filter(verb="opened").count() == count


def _post_breach(kpi: Kpi) -> None:
    _, token = api_token_create(org=kpi.organization, actor=None, name="loader")
    body = {"measurements": [{"kpi": kpi.key, "at": timezone.now().isoformat(), "value": 500}]}
    response = Client().post(
        "/api/v1/measurements", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200


def _emailed(kpi: Kpi) -> bool:
    return Notification.objects.filter(recipient=kpi.owner, channel="email").exclude(delivered_at=None).exists()


def test_a_breach_reaches_its_owner_by_email_without_waiting_for_beat(mailoutbox):
    kpi = KpiFactory(pending_for=timedelta(0), next_evaluation_at=timezone.now() + timedelta(days=1))
    purge_queue()
    started = time.monotonic()
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        _post_breach(kpi)
        # No beat runs: evaluation, the outbox and delivery each queue the next step themselves.
        wait_until(lambda: _emailed(kpi), 30, "the owner's email")
        worker_settled()
    assert time.monotonic() - started < 30
    assert Workstream.objects.get(kpi=kpi).severity == "off_track"
    assert [m.to for m in mailoutbox] == [[kpi.owner.user.email]]


def test_with_beat_sweeping_alongside_the_chain_nothing_happens_twice(mailoutbox):
    kpi = KpiFactory(pending_for=timedelta(0), next_evaluation_at=timezone.now() + timedelta(days=1))
    purge_queue()
    with start_worker(celery_app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING"):
        _post_breach(kpi)
        for _ in range(5):  # beat's sweeps, firing while the chain runs
            evaluate_kpis.delay(), process_status_changes.delay(), deliver_notifications.delay()
            time.sleep(0.2)
        wait_until(lambda: _emailed(kpi), 30, "the owner's email")
        worker_settled()  # the last sweeps finish their (empty) passes
    assert StatusChange.objects.filter(kpi=kpi).count() == 1
    assert Workstream.objects.filter(kpi=kpi).count() == 1
    assert Task.objects.filter(kpi=kpi, kind="mitigation").count() == 1
    assert len(mailoutbox) == 1
