"""A member's in-app notifications, and an organization's delivery log."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from escalations.models import Notification, WebhookDelivery
from governance.models import Membership, Organization


def notifications(*, membership: Membership) -> QuerySet[Notification]:
    """The member's in-app notifications, newest first (email copies are the same messages)."""
    return (
        Notification.objects.for_org(membership.organization)
        .filter(recipient=membership, channel=Notification.Channel.IN_APP)
        .select_related("workstream__kpi")
    )


# The delivery log's states, as the rows' fields say them (Notification.state, WebhookDelivery.state).
STATES = {
    "pending": Q(delivered_at=None, attempts=0, next_attempt_at__isnull=False),
    "retrying": Q(delivered_at=None, attempts__gt=0, next_attempt_at__isnull=False),
    "failed": Q(delivered_at=None, attempts__gt=0, next_attempt_at=None),
    "delivered": Q(delivered_at__isnull=False),
}


def delivery_log(*, org: Organization, channel: str, state: str = "") -> QuerySet:
    """The organization's recent messages on one sending channel (a person channel's name, or "webhook:<id>"),
    newest first; held digest items show as "held"."""
    if channel.startswith("webhook:"):
        rows = WebhookDelivery.objects.for_org(org).filter(webhook_id=int(channel.split(":", 1)[1]))
        rows = rows.select_related("webhook")
    else:
        rows = Notification.objects.for_org(org).filter(channel=channel).select_related("recipient__user")
        if state == "held":  # waiting for the member's daily digest (attempts 0, so in no other state)
            return rows.filter(in_digest=True, delivered_at=None)
    return rows.filter(STATES[state]) if state in STATES else rows
