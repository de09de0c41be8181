"""A member's in-app notifications."""

from __future__ import annotations

from django.db.models import (
    QuerySet,
)

from escalations.models import (
    Notification,
)
from governance.models import Membership


def notifications(*, membership: Membership) -> QuerySet[Notification]:
    """The member's in-app notifications, newest first (email copies are the same messages)."""
    return (
        Notification.objects.for_org(membership.organization)
        .filter(recipient=membership, channel=Notification.Channel.IN_APP)
        .select_related("workstream__kpi")
    )
