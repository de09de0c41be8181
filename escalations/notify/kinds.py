"""Every kind of notification a member hears, and which of them are urgent or may wait for the daily digest: the one
place that decides it (the settings form, its service and the fan-out all read it)."""

from __future__ import annotations

from escalations.models import Task

# Every kind a notification may have, as a member switches them on and off (NotificationPreference.kind).
NOTIFICATION_KINDS: dict[str, str] = {
    Task.Kind.MITIGATION: "A KPI you own needs a mitigation path",
    Task.Kind.DATA_FRESHNESS: "A KPI you own has no fresh data",
    Task.Kind.ESCALATION: "An episode is escalated to you",
    Task.Kind.DEPENDENCY_REVIEW: "An upstream KPI changed: review the impact",
    Task.Kind.ACTION: "An action you own is overdue",
    Task.Kind.OWNERSHIP_TRANSFER: "A leaver's KPI waits for someone to accept ownership",
    Task.Kind.MANUAL_ENTRY: "A manual KPI's period has ended: enter its value",
    Task.Kind.MANUAL_APPROVAL: "A manual value waits for your confirmation",
    "path_filed": "A mitigation path awaits review",
    "path_approved": "Your mitigation path was approved",
    "path_rejected": "Your mitigation path was rejected",
    "resolved": "An episode you were told about ended",
    "exhausted": "Escalation exhausted (admins)",
    "channel_failing": "A delivery channel keeps failing (admins)",
    "admin_missing": "The organization has no admin left (executives)",
    "weekly_digest": "Weekly digest, Mondays 08:00: the scorecard's week (executives) and your open items",
}

# Someone must act by a deadline, or escalation goes on without them: these always reach at least one channel (a
# member cannot switch every channel off) and never wait for quiet hours to end.
URGENT: frozenset[str] = frozenset(
    {
        Task.Kind.MITIGATION,
        Task.Kind.DATA_FRESHNESS,
        Task.Kind.ESCALATION,
        Task.Kind.DEPENDENCY_REVIEW,
        Task.Kind.ACTION,
        "exhausted",
        "channel_failing",
        "admin_missing",
    }
)

# News that asks nothing of anyone: a member may have these by email once a day (the daily digest) instead.
DIGESTIBLE: frozenset[str] = frozenset({"path_approved", "resolved"})

DAILY_DIGEST = "daily_digest"  # the kind of the daily digest's own email; not a member's choice, so not listed above
