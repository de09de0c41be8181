"""Pruning: delivered notifications, finished webhook deliveries and Slack request receipts go after
NOTIFICATION_RETENTION; pending ones, newer ones and nothing else are touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings

from escalations.models import Notification, SlackActionReceipt, WebhookDelivery
from escalations.notify.fanout import prune
from escalations.notify.services import webhook_create

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def test_it_deletes_only_what_is_done_and_older_than_the_retention(tenant, stranger_tenant):
    old = NOW - settings.NOTIFICATION_RETENTION - timedelta(minutes=1)
    recent = NOW - settings.NOTIFICATION_RETENTION + timedelta(minutes=1)

    def notification(t, key: str, created: datetime, delivered: datetime | None) -> None:
        Notification.objects.create(
            organization=t.org,
            recipient=t.lead,
            kind="escalation",
            channel="email",
            dedup_key=key,
            subject="Escalated",
            body="",
            created_at=created,
            delivered_at=delivered,
            next_attempt_at=None if delivered else created,
        )

    notification(tenant, "old-delivered", old, old)
    notification(stranger_tenant, "old-delivered-elsewhere", old, old)  # retention is the same for everyone
    notification(tenant, "old-pending", old, None)  # still being retried: kept
    notification(tenant, "recent-delivered", recent, recent)

    webhook = webhook_create(org=tenant.org, actor=tenant.admin.user, name="Ops", url="https://hooks.example/x")

    def delivery(key: str, created: datetime, next_attempt: datetime | None, delivered: datetime | None) -> None:
        WebhookDelivery.objects.create(
            organization=tenant.org,
            webhook=webhook,
            event="workstream.opened",
            payload={},
            dedup_key=key,
            created_at=created,
            next_attempt_at=next_attempt,
            delivered_at=delivered,
        )

    delivery("old-delivered", old, None, old)
    delivery("old-given-up", old, None, None)
    delivery("old-retrying", old, NOW, None)
    delivery("recent-delivered", recent, None, recent)

    SlackActionReceipt.objects.create(organization=tenant.org, key="old", received_at=old)
    SlackActionReceipt.objects.create(organization=tenant.org, key="recent", received_at=recent)

    assert prune(now=NOW) == {"notifications": 2, "webhook_deliveries": 2, "slack_receipts": 1}
    assert sorted(Notification.objects.values_list("dedup_key", flat=True)) == ["old-pending", "recent-delivered"]
    assert sorted(WebhookDelivery.objects.values_list("dedup_key", flat=True)) == ["old-retrying", "recent-delivered"]
    assert list(SlackActionReceipt.objects.values_list("key", flat=True)) == ["recent"]
    assert prune(now=NOW) == {"notifications": 0, "webhook_deliveries": 0, "slack_receipts": 0}
