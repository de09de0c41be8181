"""Reads shared by the workstream pages, the inbox and the API; every one is scoped to an organization."""

from __future__ import annotations

from django.db.models import QuerySet

from escalations.models import MitigationPath, Task, Workstream
from escalations.timing import Policy
from governance.models import Membership, Organization


def workstreams(*, org: Organization) -> QuerySet[Workstream]:
    return Workstream.objects.for_org(org).select_related("kpi__owner__user", "kpi__team")


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
