"""Review sessions and the decision log."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from escalations.models.workstreams import MitigationAction, MitigationPath, Workstream
from governance.models import (
    Membership,
    Organization,
    TenantQuerySet,
    User,
    single_line_validator,
)
from scorecards.models import Kpi, Status


class ReviewSession(models.Model):
    """A steering review: executives go through the agenda together. The decisions taken while it is open are its
    minutes; once closed it is kept as it was (the steering pack renders it)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=200, validators=[single_line_validator])
    started_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(default=now)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    summary = models.TextField(blank=True)  # the closing note
    # The meeting on the attendees' calendars (escalations.decisions.calendar): when it takes place, how long, and
    # the iCalendar SEQUENCE of the last invitation sent, raised by every change so calendars take the newest.
    scheduled_for = models.DateTimeField(null=True, blank=True)
    duration = models.DurationField(default=timedelta(hours=1), db_default=timedelta(hours=1))
    calendar_sequence = models.PositiveIntegerField(default=0, db_default=0)
    cancelled_at = models.DateTimeField(null=True, blank=True)  # cancelled before it took place; closed as well
    attendees = models.ManyToManyField(Membership, through="ReviewAttendee", related_name="review_sessions")

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # One review runs at a time: the agenda, the decisions and the attendees all point at "the" session.
            models.UniqueConstraint(
                fields=["organization"], condition=Q(closed_at__isnull=True), name="one_open_review_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class ReviewAttendee(models.Model):
    """Who attended a review (the explicit through table carries the tenant key like every other row)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(ReviewSession, on_delete=models.CASCADE, related_name="attendance")
    membership = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "membership"], name="attends_a_review_once")]

    def __str__(self) -> str:
        return f"{self.membership_id} at review {self.session_id}"


class Decision(models.Model):
    """What someone decided about a KPI, why, and by when it should show (`expected_by`): the decision log. Written
    once by escalations.engine.authority.decision_record, in the transaction of the effect it describes, wherever the
    decision was taken (a page, the agenda, the API); never edited. The kinds are the API's names (API.md)."""

    class Kind(models.TextChoices):
        PATH_APPROVED = "path_approved", "Approved the mitigation path"
        PATH_REJECTED = "path_rejected", "Rejected the mitigation path"
        WORKSTREAM_CLOSED = "workstream_closed", "Closed the workstream"
        RISK_ACCEPTED = "risk_accepted", "Accepted the risk"
        TARGET_CHANGED = "target_changed", "Changed the target"
        TRANSFER_DECIDED = "transfer_decided", "Decided an ownership transfer"
        REVIEW_NO_IMPACT = "review_no_impact", "Answered a dependency review: no impact"
        TRANSFER_REQUESTED = "transfer_requested", "Requested an ownership transfer"
        ACTION_ASSIGNED = "action_assigned", "Assigned an action"
        VALUE_CONFIRMED = "value_confirmed", "Confirmed a manual value"
        VALUE_REJECTED = "value_rejected", "Rejected a manual value"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="decisions")
    workstream = models.ForeignKey(
        Workstream, null=True, blank=True, on_delete=models.CASCADE, related_name="decisions"
    )
    session = models.ForeignKey(
        ReviewSession, null=True, blank=True, on_delete=models.PROTECT, related_name="decisions"
    )
    decided_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(default=now)
    reason = models.TextField()
    kpi_status = models.CharField(max_length=10, choices=Status.choices)  # the KPI's status when decided
    # What changed, in the audit log's spelling: {"before": {...}, "after": {...}} or the decision's own fields.
    payload = models.JSONField(default=dict, blank=True)
    # The follow-up: the day by which the KPI should be on track (accepting a risk: the day the pause ends).
    expected_by = models.DateField(null=True, blank=True)
    path = models.ForeignKey(MitigationPath, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    action = models.ForeignKey(MitigationAction, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    transfer = models.ForeignKey(
        "scorecards.OwnershipTransfer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Four eyes (SEMANTICS.md section 3): taken by an interested person because nobody else in the organization
    # may decide; the log shows it in red and the governance health page counts it.
    self_approved = models.BooleanField(default=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-decided_at", "-id"]
        constraints = [models.CheckConstraint(condition=~Q(reason=""), name="decision_has_a_reason")]
        indexes = [
            models.Index(fields=["organization", "-decided_at"], name="decision_log"),
            models.Index(fields=["kpi", "-decided_at"], name="decision_by_kpi"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.kpi_id} at {self.decided_at:%Y-%m-%d %H:%M}"

    def audit_repr(self) -> str:
        return self.kpi.name
