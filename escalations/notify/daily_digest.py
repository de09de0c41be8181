"""The daily digest: the low-severity messages a member asked to have once a day (NotificationSettings.digest_kinds)
are held (Notification.in_digest) and sent together in one email when the organization's business hours open.

Once per member and local day, whatever the beats: the digest's dedup key names the member and the day, and the
held rows are marked delivered in the transaction that writes the digest listing them. Rows held after today's
digest went out wait for tomorrow's."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from escalations.models import Notification
from escalations.notify.kinds import DAILY_DIGEST, NOTIFICATION_KINDS
from governance import formats
from governance.hours import business_hours
from governance.models import Organization

MAX_ITEMS = 50  # one email stays readable; the rest are in the inbox (and marked sent with it)


def send_daily_digests(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Writes the digests due now (their emails go out with the next delivery sweep); returns how many."""
    now = now or timezone.now()
    held = Notification.objects.filter(in_digest=True, delivered_at=None)
    if org_id:
        held = held.filter(organization_id=org_id)
    written = 0
    for org in Organization.objects.filter(pk__in=held.values("organization_id")):
        if business_hours(org).next_opening(now) != now:
            continue  # the digest goes out when the organization's day opens
        day = formats.local_day(now, org.tzinfo)
        members = set(held.filter(organization=org).values_list("recipient_id", flat=True))
        sent = set(
            Notification.objects.filter(
                organization=org, kind=DAILY_DIGEST, dedup_key__in=[_key(org, day, m) for m in members]
            ).values_list("recipient_id", flat=True)
        )
        written += sum(_send(org, member_id, day, now) for member_id in sorted(members - sent))
    return written


def _key(org: Organization, day, member_id: int) -> str:
    return f"daily_digest:{org.pk}:{day.isoformat()}:{member_id}"


@transaction.atomic
def _send(org: Organization, member_id: int, day, now: datetime) -> int:
    # Another sweep writing this member's digest holds these rows; it will list them.
    items = list(
        Notification.objects.filter(organization=org, recipient_id=member_id, in_digest=True, delivered_at=None)
        .order_by("created_at", "id")
        .select_for_update(skip_locked=True)
    )
    if not items:
        return 0
    try:
        with transaction.atomic():
            Notification.objects.create(
                organization=org,
                recipient_id=member_id,
                kind=DAILY_DIGEST,
                channel=Notification.Channel.EMAIL,
                dedup_key=_key(org, day, member_id),
                subject=f"Your daily digest: {len(items)} update{'s' if len(items) != 1 else ''}",
                body="\n".join(f"- {item.subject}" for item in items),
                payload=_payload(org, day, items),
                created_at=now,
                next_attempt_at=now,
            )
    except IntegrityError:
        return 0  # today's digest is written already: these wait for tomorrow's
    Notification.objects.filter(pk__in=[item.pk for item in items]).update(delivered_at=now, error="")
    return 1


def _payload(org: Organization, day, items: list[Notification]) -> dict:
    return {
        "org": org.name,
        "day": formats.day(day, weekday=True),
        "timezone": org.timezone,
        "items": [
            {
                "kind": NOTIFICATION_KINDS.get(item.kind, item.kind),
                "subject": item.subject,
                "body": item.body,
                "url": item.url,
                "when": formats.when(item.created_at, org.tzinfo),
            }
            for item in items[:MAX_ITEMS]
        ],
        "more": max(len(items) - MAX_ITEMS, 0),
        "links": {
            "inbox": reverse("escalations:notification_list", args=[org.slug]),
            "settings": reverse("escalations:notification_settings", args=[org.slug]),
        },
    }
