"""Reads shared by the workstream pages, the inbox and the API; every one is scoped to an organization."""

from __future__ import annotations

from django.db.models import Case, Count, Exists, F, IntegerField, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from escalations.models import MitigationPath, Notification, Task, Workstream
from escalations.timing import Policy
from governance.models import Membership, Organization
from scorecards.models import Status

OPEN_STATES = [Task.State.OPEN, Task.State.ACKNOWLEDGED]


def workstreams(*, org: Organization) -> QuerySet[Workstream]:
    return Workstream.objects.for_org(org).select_related("kpi__owner__user", "kpi__team")


def workstream_list(*, org: Organization, state: str = "open", kind: str = "") -> QuerySet[Workstream]:
    """Open episodes first, the most severe and then the oldest on top; resolved ones after, newest first."""
    severity = Case(
        *(When(severity=s, then=Value(i)) for i, s in enumerate([Status.OFF_TRACK, Status.AT_RISK, Status.STALE])),
        default=Value(9),
        output_field=IntegerField(),
    )
    latest = MitigationPath.objects.filter(workstream=OuterRef("pk")).order_by("-filed_at", "-id")
    qs = workstreams(org=org).annotate(severity_rank=severity, path_state=Subquery(latest.values("state")[:1]))
    if state == "open":
        qs = qs.filter(resolved_at=None)
    elif state == "resolved":
        qs = qs.exclude(resolved_at=None)
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by(F("resolved_at").desc(nulls_first=True), "severity_rank", "opened_at", "id")


def path_history(workstream: Workstream) -> QuerySet[MitigationPath]:
    """Every path filed in the episode, newest first, with its actions and their owners."""
    return workstream.paths.select_related("filed_by", "reviewed_by").prefetch_related("actions__owner__user")


def latest_path(workstream: Workstream) -> MitigationPath | None:
    return workstream.paths.select_related("filed_by", "reviewed_by").prefetch_related("actions__owner__user").first()


def escalation_state(workstream: Workstream) -> str:
    """Where the escalation stands, in words."""
    levels = len(Policy.from_json(workstream.policy).levels) if workstream.policy else 0
    if not workstream.is_open:
        return "Resolved"
    if workstream.exhausted_at:
        return "Escalation exhausted: the organization's admins were told"
    if not levels:
        return "No escalation policy applies: only the owner's task runs"
    if workstream.next_escalation_at is None:
        return "Escalation stopped: the mitigation path is approved"
    if not workstream.level:
        return "Not escalated yet: the owner's mitigation task runs"
    return f"Escalated to level {workstream.level} of {levels}, pass {workstream.escalation_pass}"


def open_tasks(*, membership: Membership) -> QuerySet[Task]:
    """What waits for me: open and acknowledged tasks, the overdue ones first."""
    return (
        Task.objects.for_org(membership.organization)
        .filter(assignee=membership, state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED])
        .select_related("kpi", "workstream")
        .order_by("due_at", "id")
    )


def inbox(*, membership: Membership) -> QuerySet[Task]:
    """open_tasks with what the inbox acts on: the overdue action, and whether a path awaits review."""
    waiting = MitigationPath.objects.filter(workstream=OuterRef("workstream"), state=MitigationPath.State.SUBMITTED)
    return open_tasks(membership=membership).select_related("action").annotate(path_waiting=Exists(waiting))


def notifications(*, membership: Membership) -> QuerySet[Notification]:
    """The member's in-app notifications, newest first (email copies are the same messages)."""
    return (
        Notification.objects.for_org(membership.organization)
        .filter(recipient=membership, channel=Notification.Channel.IN_APP)
        .select_related("workstream__kpi")
    )


def inbox_counts(*, membership: Membership) -> dict[str, int]:
    """Unread in-app notifications and open tasks, for the navigation, in one query."""

    def count(qs: QuerySet, by: str) -> Coalesce:
        return Coalesce(Subquery(qs.order_by().values(by).annotate(n=Count("pk")).values("n")[:1]), 0)

    unread = Notification.objects.filter(recipient=OuterRef("pk"), channel=Notification.Channel.IN_APP, read_at=None)
    tasks = Task.objects.filter(assignee=OuterRef("pk"), state__in=OPEN_STATES)
    row = (
        Membership.objects.filter(pk=membership.pk)
        .values(n_unread=count(unread, "recipient"), n_tasks=count(tasks, "assignee"))
        .first()
    )
    return {"unread": row["n_unread"], "tasks": row["n_tasks"]} if row else {"unread": 0, "tasks": 0}
