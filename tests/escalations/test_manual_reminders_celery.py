"""The manual values' reminder through a real Celery worker and the real broker: two beats delivered at once write
each period's entry tasks once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from escalations.models import Notification, Task
from escalations.tasks import remind_manual_values
from governance.models import Role
from scorecards.models import Kpi, Period
from scorecards.services import manual_kpi_set
from tests.conftest import worker_settled
from tests.escalations.test_celery import purge_queue, wait_until
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory

pytestmark = [
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("redis://") or connection.vendor != "postgresql",
        reason="needs the real broker (Redis) and PostgreSQL row locks",
    ),
    pytest.mark.django_db(transaction=True),
]
COUNT = 50


def test_two_reminder_beats_at_once_ask_each_updater_once_per_period():
    org = OrganizationFactory()
    owner, updater = MembershipFactory(organization=org), MembershipFactory(organization=org)
    approver = MembershipFactory(organization=org, role=Role.EXECUTIVE)
    team = TeamFactory(organization=org)
    for i in range(COUNT):
        kpi = KpiFactory(organization=org, team=team, owner=owner, key=f"m.{i}")
        Kpi.objects.filter(pk=kpi.pk).update(created_at=datetime(2020, 1, 1, tzinfo=UTC))
        manual_kpi_set(kpi=kpi, actor=None, period=Period.MONTHLY, updaters=[updater], approver=approver)
    purge_queue()
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        remind_manual_values.delay(), remind_manual_values.delay()
        wait_until(lambda: Task.objects.count() >= 2 * COUNT, 60, "every entry task")
        worker_settled()
    assert Task.objects.filter(kind=Task.Kind.MANUAL_ENTRY).count() == 2 * COUNT
    assert Notification.objects.filter(kind=Task.Kind.MANUAL_ENTRY, channel="email").count() == 2 * COUNT
