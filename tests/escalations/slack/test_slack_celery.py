"""Slack's clicks and the web's decisions through a real Celery worker and the real broker (Redis in CI)."""

from __future__ import annotations

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from escalations.models import Decision, MitigationPath, SlackMessage, Task
from escalations.notify.fanout import Message, deliver_due, notify
from escalations.workstreams import services
from governance import tenancy
from tests.conftest import worker_settled
from tests.escalations.slack.conftest import click, connect, payload_body, signed, submission

pytestmark = [
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("redis://") or connection.vendor != "postgresql",
        reason="needs the real broker (Redis) and PostgreSQL",
    ),
    pytest.mark.django_db(transaction=True),
]


def _sent(t) -> SlackMessage:
    notify(
        recipients=[t.executive],
        message=Message(kind="escalation", subject="Escalation: Throughput", body="Off track", url="/o/acme/"),
        dedup_key="celery",
        workstream=t.episode.workstream,
    )
    deliver_due()
    return SlackMessage.objects.get(recipient=t.executive)


def test_a_click_is_decided_by_the_worker_and_the_message_updated(tenant, fake_slack):
    connect(tenant, fake_slack)
    message = _sent(tenant)
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        assert (
            signed(
                "/slack/interactivity/", payload_body(click("T0ACME", "UT0ACMEEXEC", "acknowledge", message.pk))
            ).status_code
            == 200
        )
        body = payload_body(submission("T0ACME", "UT0ACMEEXEC", "approve", message.pk, "Credible plan"))
        signed("/slack/interactivity/", body)
        signed("/slack/interactivity/", body, retry=1)  # Slack's retry
        worker_settled()
    assert Task.objects.get(pk=tenant.episode.task.pk).state != Task.State.OPEN
    path = MitigationPath.objects.get(pk=tenant.episode.path.pk)
    assert path.state == MitigationPath.State.APPROVED and Decision.objects.filter(path=path).count() == 1
    assert "Approved by" in str(fake_slack.called("chat.update")[-1]["blocks"])


def test_a_web_decision_updates_the_message_through_the_worker(tenant, fake_slack):
    connect(tenant, fake_slack)
    message = _sent(tenant)
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        with tenancy.scope(organization=tenant.org.pk):
            services.mitigation_path_review(
                path=tenant.episode.path, by=tenant.executive, approve=True, comment="Decided on the web"
            )
        worker_settled()
    update = fake_slack.called("chat.update")[-1]
    assert update["ts"] == message.ts and "Decided on the web" in str(update["blocks"])
