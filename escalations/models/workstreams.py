"""Workstreams (escalation and preventive episodes), their mitigation paths and actions, tasks and timeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from governance.models import (
    Membership,
    Organization,
    TenantQuerySet,
    User,
)
from scorecards.models import Kpi, Status, StatusChange

if TYPE_CHECKING:  # a review refers to its task: the import goes the other way
    from escalations.models.reviews import DependencyReview


class Workstream(models.Model):
    """One episode of a KPI in breach (or stale): the owner files a mitigation path, escalation runs until one
    is approved, and it ends by recovery or by an executive's decision."""

    class Kind(models.TextChoices):
        MITIGATION = "mitigation", "Mitigation"
        DATA_FRESHNESS = "data_freshness", "Data freshness"
        PREVENTIVE = "preventive", "Preventive"

    class Resolution(models.TextChoices):
        RECOVERED = "recovered", "Recovered"
        TARGET_CHANGED = "target_changed", "Closed: target changed"
        ACCEPTED_RISK = "accepted_risk", "Closed: accepted risk"
        NO_LONGER_RELEVANT = "no_longer_relevant", "Closed: no longer relevant"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="workstreams")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MITIGATION)
    severity = models.CharField(max_length=10, choices=Status.choices)
    opened_at = models.DateTimeField()
    opened_by_change = models.OneToOneField(
        StatusChange, null=True, blank=True, on_delete=models.SET_NULL, related_name="opened_workstream"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=20, choices=Resolution.choices, blank=True)
    resolution_reason = models.TextField(blank=True)
    closed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The escalation policy as it was when the episode opened (escalations.engine.timing.Policy.as_json()).
    policy_key = models.CharField(max_length=64, blank=True)
    policy = models.JSONField(default=dict)
    # Escalation state: the last level notified (0: none yet) in which pass, and when the next step is due.
    level = models.PositiveSmallIntegerField(default=0)
    escalation_pass = models.PositiveSmallIntegerField(default=0)
    next_escalation_at = models.DateTimeField(null=True, blank=True)
    renotify = models.BooleanField(default=False)  # an acknowledgement runs out: the same level again
    exhausted_at = models.DateTimeField(null=True, blank=True)
    # Inhibition (SEMANTICS.md section 4): the open episode of a direct upstream KPI within which this one opened.
    # While set, escalation waits; when that episode resolves, next_escalation_at becomes the later of its own
    # value and the upstream's resolution time (escalations.engine.episodes.Episodes.release_downstream).
    waiting_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kpi"], condition=Q(resolved_at__isnull=True), name="one_open_workstream_per_kpi"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_escalation_at"], condition=Q(resolved_at__isnull=True), name="workstream_escalation_due"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.kpi_id} opened {self.opened_at:%Y-%m-%d %H:%M}"

    def audit_repr(self) -> str:
        return f"{self.get_kind_display().lower()} workstream of {self.kpi.name}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class MitigationPath(models.Model):
    """What the owner will do about a breach: a root cause, actions with owners and dates, a recovery date."""

    class State(models.TextChoices):
        SUBMITTED = "submitted", "Awaiting review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workstream = models.ForeignKey(Workstream, on_delete=models.CASCADE, related_name="paths")
    root_cause = models.TextField()
    expected_recovery = models.DateField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.SUBMITTED)
    filed_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    filed_at = models.DateTimeField(default=now)
    reviewed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-filed_at", "-id"]

    def __str__(self) -> str:
        return f"mitigation path of {self.workstream_id} ({self.state})"

    def audit_repr(self) -> str:
        return f"mitigation path for {self.workstream.kpi.name}"


class MitigationAction(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    path = models.ForeignKey(MitigationPath, on_delete=models.CASCADE, related_name="actions")
    description = models.TextField()
    owner = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="mitigation_actions")
    due = models.DateField()
    done_at = models.DateTimeField(null=True, blank=True)
    progress = models.TextField(blank=True)
    overdue_at = models.DateTimeField(null=True, blank=True)  # when the sweep found it overdue (once)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["due", "id"]

    def __str__(self) -> str:
        return self.description[:60]


class Task(models.Model):
    """Something one person must do, with a due time: what the tasks inbox lists."""

    class Kind(models.TextChoices):
        MITIGATION = "mitigation", "File a mitigation path"
        ESCALATION = "escalation", "Escalation"
        DEPENDENCY_REVIEW = "dependency_review", "Dependency review"
        ACTION = "action", "Overdue action"
        DATA_FRESHNESS = "data_freshness", "Restore data"
        OWNERSHIP_TRANSFER = "ownership_transfer", "Accept ownership"
        MANUAL_ENTRY = "manual_entry", "Enter the period's value"
        MANUAL_APPROVAL = "manual_approval", "Confirm a value"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    assignee = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="tasks")
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="tasks")
    workstream = models.ForeignKey(Workstream, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks")
    action = models.ForeignKey(MitigationAction, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks")
    # The dependency review an escalation task escalates (such tasks have no workstream). A downstream owner's
    # dependency_review task has none: it groups several reviews, one per affected KPI (DependencyReview.task).
    review = models.ForeignKey(
        "DependencyReview", null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    level = models.PositiveSmallIntegerField(default=0)
    escalation_pass = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(max_length=12, choices=State.choices, default=State.OPEN)
    due_at = models.DateTimeField()
    created_at = models.DateTimeField(default=now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    # Redelivered or repeated sweeps never create a task twice (org:kpi:episode:kind:level:pass:recipient).
    dedup_key = models.CharField(max_length=200, unique=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [models.Index(fields=["assignee", "state", "due_at"], name="task_inbox")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.assignee_id} due {self.due_at:%Y-%m-%d %H:%M}"

    def audit_repr(self) -> str:
        return f"task “{self.get_kind_display()}” on {self.kpi.name}"

    @property
    def is_open(self) -> bool:
        return self.state in (self.State.OPEN, self.State.ACKNOWLEDGED)

    @property
    def review_parts(self) -> list[DependencyReview]:
        """The per-KPI reviews this task answers: all those an owner's review task groups, or the one an escalation
        task escalates. Prefetch `reviews` (and `review`) for lists."""
        if self.kind == self.Kind.DEPENDENCY_REVIEW:
            return sorted(self.reviews.all(), key=lambda r: (r.opened_at, r.pk))
        return [self.review] if self.review_id else []

    @property
    def open_parts(self) -> list[DependencyReview]:
        return [r for r in self.review_parts if r.is_open]


class WorkstreamEvent(models.Model):
    """The workstream's timeline: everything that happened in the episode, in order."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workstream = models.ForeignKey(Workstream, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    verb = models.CharField(max_length=40)  # opened, escalated, level_skipped, path_filed, approved, ...
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.verb}: {self.text[:60]}"
