"""Notifications: created with a dedup key in the same transaction as what they announce, delivered by a sweep.

One row per member and channel (escalations.notify.channels), written here and nowhere else. In-app notifications
are delivered when created; the other channels wait for `deliver_notifications`, which retries a failed send with
backoff (and no sooner than a remote's Retry-After). A member chooses the channels of each kind
(NotificationPreference; an urgent kind always reaches at least one), quiet hours, and the daily digest for
low-severity kinds (NotificationSettings).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from escalations.models import (
    Notification,
    NotificationPreference,
    NotificationSettings,
    SlackActionReceipt,
    WebhookDelivery,
    Workstream,
)
from escalations.notify.channels import CHANNELS, RetryLater, in_app
from escalations.notify.kinds import URGENT
from governance.hours import business_hours
from governance.models import Membership
from governance.selectors import secrets_remembered

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BATCH_SIZE = 200
LEASE = timedelta(minutes=5)  # longer than a batch of sends takes; a crash mid-batch retries its rest after it
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
    """`notify` for many announcements at once: one read of the preferences and settings, one insert."""
    announcements = [a for a in announcements if a.recipients]
    if not announcements:
        return
    now = now or timezone.now()
    members = {r.pk for a in announcements for r in a.recipients}
    off = set(
        NotificationPreference.objects.filter(
            membership__in=members, kind__in={a.message.kind for a in announcements}, enabled=False
        ).values_list("membership_id", "kind", "channel")
    )
    # Channels that reach only some members (a Slack DM needs a linked account) say which.
    reach = {
        name: channel.available_to(members) for name, channel in CHANNELS.items() if hasattr(channel, "available_to")
    }
    timing = _Timing(members, now)
    rows = []
    for a in announcements:
        kind = a.message.kind
        for recipient in a.recipients:
            channels = [
                channel
                for name, channel in CHANNELS.items()
                if (recipient.pk, kind, name) not in off and (name not in reach or recipient.pk in reach[name])
            ]
            if not channels and kind in URGENT:
                channels = [in_app]  # an urgent message always reaches someone, whatever the settings say
            rows += [_row(a, recipient, channel, now, timing) for channel in channels]
    Notification.objects.bulk_create(rows, ignore_conflicts=True)


class _Timing:
    """When a member's message on a sending channel goes out: now, at the next business opening (quiet hours), or
    in tomorrow's daily digest (email only)."""

    def __init__(self, members: set[int], now: datetime):
        self.now = now
        self.settings = {
            s.membership_id: s
            for s in NotificationSettings.objects.filter(membership__in=members).select_related("organization")
        }

    def in_digest(self, recipient: Membership, kind: str, channel: ModuleType) -> bool:
        chosen = self.settings.get(recipient.pk)
        return channel.NAME == Notification.Channel.EMAIL and chosen is not None and kind in chosen.digest_kinds

    def send_at(self, recipient: Membership, kind: str) -> datetime:
        chosen = self.settings.get(recipient.pk)
        if chosen is None or not chosen.quiet_hours or kind in URGENT:
            return self.now
        return business_hours(chosen.organization).next_opening(self.now)


def _row(a: Announcement, recipient: Membership, channel: ModuleType, now: datetime, timing: _Timing) -> Notification:
    kind = a.message.kind
    delivered = channel.DELIVERED_WHEN_WRITTEN
    held = not delivered and timing.in_digest(recipient, kind, channel)
    return Notification(
        organization_id=recipient.organization_id,
        recipient=recipient,
        kind=kind,
        channel=channel.NAME,
        dedup_key=f"{a.dedup_key}:{recipient.pk}",
        subject=a.message.subject[:200],
        body=a.message.body,
        url=a.message.url,
        payload=(a.message.payload or {}) if channel.KEEPS_PAYLOAD else {},
        workstream=a.workstream,
        created_at=now,
        delivered_at=now if delivered else None,
        next_attempt_at=None if delivered or held else timing.send_at(recipient, kind),
        in_digest=held,
    )


def deliver_due(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Sends what is due on the channels that send (email), batch by batch; a failure is recorded and retried
    later, doubling the wait, and no sooner than a channel's RetryLater asked.

    A batch is leased first (next_attempt_at moves past the lease, in a short transaction) and each outcome is saved
    as soon as it is known, so a worker killed mid-batch leaves only the message in flight to be sent again after the
    lease (with the same Message-ID, which the receiving side may drop), never the ones before it, and no lock is
    held while a mail server answers."""
    now = now or timezone.now()
    sent = 0
    while batch := _lease(now, org_id):
        # An organization's credentials (its Slack bot token) are read and decrypted once per batch, not per message;
        # the next batch reads them again, so a rotated token is used from then on.
        with secrets_remembered():
            for notification in batch:
                sent += _attempt(notification, now)
    return sent


def _lease(now: datetime, org_id: int | None) -> list[Notification]:
    with transaction.atomic():
        due = Notification.objects.filter(delivered_at=None, next_attempt_at__lte=now)
        if org_id:
            due = due.filter(organization_id=org_id)
        batch = list(
            due.select_related("recipient__user", "organization")
            .order_by("next_attempt_at", "id")
            .select_for_update(skip_locked=True, of=("self",))[:BATCH_SIZE]
        )
        Notification.objects.filter(pk__in=[n.pk for n in batch]).update(next_attempt_at=now + LEASE)
    return batch


def _attempt(notification: Notification, now: datetime) -> int:
    notification.attempts += 1
    try:
        CHANNELS[notification.channel].send(notification)
    except RetryLater as later:
        _failed(notification, now, f"RetryLater: {later.reason or later}", later.seconds)
    except Exception as error:  # an unreachable mail server must not stop the other messages
        _failed(notification, now, f"{type(error).__name__}: {error}")
    else:
        notification.delivered_at, notification.next_attempt_at, notification.error = now, None, ""
    notification.save(update_fields=["attempts", "error", "next_attempt_at", "delivered_at"])
    return 1 if notification.delivered_at else 0


def _failed(notification: Notification, now: datetime, error: str, at_least: float = 0) -> None:
    log.warning("%s notification %s failed: %s", notification.channel, notification.pk, error)
    notification.error = error[:2000]
    if notification.attempts >= MAX_ATTEMPTS:
        notification.next_attempt_at = None  # given up: the delivery log shows it and the admins are told
    else:
        notification.next_attempt_at = now + max(backoff(notification.attempts), timedelta(seconds=at_least))


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure: 2, 4, 8 ... minutes."""
    return timedelta(minutes=2**attempts)


def prune(*, now: datetime | None = None) -> dict[str, int]:
    """Deletes what is done and older than NOTIFICATION_RETENTION: delivered notifications (read or not) and webhook
    deliveries that were delivered or given up, and the receipts of Slack requests acted on (Slack resends within
    minutes). Pending ones stay, whatever their age. In slices, so that no one statement holds many rows."""
    before = (now or timezone.now()) - settings.NOTIFICATION_RETENTION
    done = {
        "notifications": Notification.objects.filter(created_at__lt=before).exclude(delivered_at=None),
        "webhook_deliveries": WebhookDelivery.objects.filter(created_at__lt=before, next_attempt_at=None),
        "slack_receipts": SlackActionReceipt.objects.filter(received_at__lt=before),
    }
    deleted = dict.fromkeys(done, 0)
    for name, old in done.items():
        while ids := list(old.values_list("pk", flat=True)[:PRUNE_SLICE]):
            deleted[name] += old.model.objects.filter(pk__in=ids).delete()[0]
    return deleted
