"""Notifications: created with a dedup key in the same transaction as what they announce, delivered by a sweep.

One row per member and channel (escalations.notify.channels), written here and nowhere else. In-app notifications
are delivered when created; emails wait for `deliver_notifications`, which retries a failed send with backoff. A
member may switch off any kind on any channel (NotificationPreference).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from escalations.models import Notification, NotificationPreference, WebhookDelivery, Workstream
from escalations.notify.channels import CHANNELS
from governance.models import Membership

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BATCH_SIZE = 200
PRUNE_SLICE = 5_000


@dataclass(frozen=True)
class Message:
    kind: str
    subject: str
    body: str
    url: str = ""
    payload: dict | None = None  # what a channel with a rich format renders (KEEPS_PAYLOAD), e.g. the digest


@dataclass(frozen=True)
class Announcement:
    recipients: list[Membership]
    message: Message
    dedup_key: str
    workstream: Workstream | None = None


def notify(
    *,
    recipients: list[Membership],
    message: Message,
    dedup_key: str,
    workstream: Workstream | None = None,
    now: datetime | None = None,
) -> None:
    """One notification per recipient and enabled channel; a key seen before creates nothing."""
    notify_all([Announcement(recipients, message, dedup_key, workstream)], now=now)


def notify_all(announcements: list[Announcement], *, now: datetime | None = None) -> None:
    """`notify` for many announcements at once: one read of the preferences, one insert."""
    announcements = [a for a in announcements if a.recipients]
    if not announcements:
        return
    now = now or timezone.now()
    off = set(
        NotificationPreference.objects.filter(
            membership__in={r.pk for a in announcements for r in a.recipients},
            kind__in={a.message.kind for a in announcements},
            enabled=False,
        ).values_list("membership_id", "kind", "channel")
    )
    everyone = {r.pk for a in announcements for r in a.recipients}
    # A channel that reaches only some members (Slack: the linked ones) says which, once per call.
    reach = {c.NAME: c.available_to(everyone) for c in CHANNELS.values() if hasattr(c, "available_to")}
    rows = [
        _row(a, recipient, channel, now)
        for a in announcements
        for recipient in a.recipients
        for channel in CHANNELS.values()
        if (recipient.pk, a.message.kind, channel.NAME) not in off
        and (channel.NAME not in reach or recipient.pk in reach[channel.NAME])
    ]
    Notification.objects.bulk_create(rows, ignore_conflicts=True)


def _row(a: Announcement, recipient: Membership, channel: ModuleType, now: datetime) -> Notification:
    delivered = channel.DELIVERED_WHEN_WRITTEN
    return Notification(
        organization_id=recipient.organization_id,
        recipient=recipient,
        kind=a.message.kind,
        channel=channel.NAME,
        dedup_key=f"{a.dedup_key}:{recipient.pk}",
        subject=a.message.subject[:200],
        body=a.message.body,
        url=a.message.url,
        payload=(a.message.payload or {}) if channel.KEEPS_PAYLOAD else {},
        workstream=a.workstream,
        created_at=now,
        delivered_at=now if delivered else None,
        next_attempt_at=None if delivered else now,
    )


def deliver_due(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Sends what is due on the channels that send (email), batch by batch; a failure is recorded and retried
    later, doubling the wait."""
    now = now or timezone.now()
    sent = 0
    while True:
        with transaction.atomic():
            due = Notification.objects.filter(delivered_at=None, next_attempt_at__lte=now)
            if org_id:
                due = due.filter(organization_id=org_id)
            batch = list(
                due.select_related("recipient__user", "organization").select_for_update(skip_locked=True, of=("self",))[
                    :BATCH_SIZE
                ]
            )
            if not batch:
                return sent
            for notification in batch:
                notification.attempts += 1
                try:
                    CHANNELS[notification.channel].send(notification)
                except Exception as error:  # an unreachable mail server must not stop the other messages
                    log.warning("%s notification %s failed: %s", notification.channel, notification.pk, error)
                    notification.error = f"{type(error).__name__}: {error}"[:2000]
                    notification.next_attempt_at = (
                        None
                        if notification.attempts >= MAX_ATTEMPTS
                        else now + timedelta(minutes=2**notification.attempts)
                    )
                else:
                    notification.delivered_at, notification.next_attempt_at, notification.error = now, None, ""
                    sent += 1
            Notification.objects.bulk_update(batch, ["attempts", "error", "next_attempt_at", "delivered_at"])


def prune(*, now: datetime | None = None) -> dict[str, int]:
    """Deletes what is done and older than NOTIFICATION_RETENTION: delivered notifications (read or not) and webhook
    deliveries that were delivered or given up. Pending ones stay, whatever their age. In slices, so that no one
    statement holds many rows."""
    before = (now or timezone.now()) - settings.NOTIFICATION_RETENTION
    done = {
        "notifications": Notification.objects.filter(created_at__lt=before).exclude(delivered_at=None),
        "webhook_deliveries": WebhookDelivery.objects.filter(created_at__lt=before, next_attempt_at=None),
    }
    deleted = dict.fromkeys(done, 0)
    for name, old in done.items():
        while ids := list(old.values_list("pk", flat=True)[:PRUNE_SLICE]):
            deleted[name] += old.model.objects.filter(pk__in=ids).delete()[0]
    return deleted
