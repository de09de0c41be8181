"""Dependency signals and the reviews they open downstream."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from escalations.models.workstreams import Task, Workstream
from governance.models import (
    Organization,
    TenantQuerySet,
    User,
)
from scorecards.models import Kpi, StatusChange, SurgeSignal


class DependencySignal(models.Model):
    """Something that happened to an upstream KPI which its direct downstream owners must assess (SEMANTICS.md
    section 4): an official change into at_risk, off_track or stale, or a surge. process_status_changes writes it
    from the scorecards outbox rows and, in a later phase of the same sweep, propagates it (propagated_at)."""

    class Kind(models.TextChoices):
        STATUS = "status", "Status change"
        SURGE = "surge", "Surge"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="dependency_signals")  # the upstream
    kind = models.CharField(max_length=10, choices=Kind.choices)
    at = models.DateTimeField()  # when it happened (the evaluation that decided it), not when a sweep saw it
    cause = models.TextField()  # "Marketing leads is off track: 640 leads, under the warning 800"
    value = models.FloatField(null=True, blank=True)
    trend = models.CharField(max_length=200, blank=True)  # "+45% leads over 7 days", "On track -> Off track"
    # Where it came from; one signal per outbox row, so a redelivered sweep cannot signal twice.
    status_change = models.OneToOneField(
        StatusChange, null=True, blank=True, on_delete=models.SET_NULL, related_name="dependency_signal"
    )
    surge = models.OneToOneField(
        SurgeSignal, null=True, blank=True, on_delete=models.SET_NULL, related_name="dependency_signal"
    )
    propagated_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["at"], name="dependencysignal_pending", condition=Q(propagated_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.kpi_id} at {self.at:%Y-%m-%d %H:%M}"


class DependencyReview(models.Model):
    """A downstream owner's assessment of what happened upstream to one downstream KPI: "no impact" (with a reason)
    or "impact", which opens a preventive workstream on that KPI. It lists every signal grouped into it, is due after
    the upstream policy's mitigation_due, and until answered escalates level by level as a workstream does,
    following the snapshot of that policy taken when it opened (targets such as owner and team_lead name the
    downstream KPI's people).

    The owner gets one review task for everything reaching them within GROUP_WINDOW (escalations.engine.reviews): the
    task groups one review per affected KPI (`task`), and each is answered on its own."""

    class Answer(models.TextChoices):
        IMPACT = "impact", "Impact"
        NO_IMPACT = "no_impact", "No impact"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="dependency_reviews")  # the downstream
    # The downstream owner's dependency_review task listing this review beside the others of its window.
    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews")
    opened_at = models.DateTimeField()  # its first signal's time; the task's window starts at its first review's
    due_at = models.DateTimeField()
    policy_key = models.CharField(max_length=64, blank=True)
    policy = models.JSONField(default=dict)  # escalations.engine.timing.Policy.as_json() of the upstream's policy
    level = models.PositiveSmallIntegerField(default=0)
    escalation_pass = models.PositiveSmallIntegerField(default=0)
    next_escalation_at = models.DateTimeField(null=True, blank=True)
    renotify = models.BooleanField(default=False)
    exhausted_at = models.DateTimeField(null=True, blank=True)
    answer = models.CharField(max_length=10, choices=Answer.choices, blank=True)
    answer_reason = models.TextField(blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The workstream an "impact" answer opened (preventive), or the one already open that it was added to.
    workstream = models.ForeignKey(
        Workstream, null=True, blank=True, on_delete=models.SET_NULL, related_name="dependency_reviews"
    )
    # What a review's escalation did (a review has no timeline of its own): {"at", "verb", "text"}.
    history = models.JSONField(default=list, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_escalation_at"], condition=Q(answered_at__isnull=True), name="review_escalation_due"
            ),
            models.Index(fields=["kpi", "opened_at"], name="review_by_kpi"),
        ]

    def __str__(self) -> str:
        return f"dependency review of {self.kpi_id} opened {self.opened_at:%Y-%m-%d %H:%M}"

    def audit_repr(self) -> str:
        return f"dependency review of {self.kpi.name}"

    @property
    def is_open(self) -> bool:
        return self.answered_at is None


class DependencyReviewSignal(models.Model):
    """One upstream signal as it reached one downstream KPI: listed in a review, or throttled (recorded, and
    attached to the review that throttled it, but no new review)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    signal = models.ForeignKey(DependencySignal, on_delete=models.CASCADE, related_name="deliveries")
    review = models.ForeignKey(DependencyReview, on_delete=models.CASCADE, related_name="signals")
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="upstream_signals")  # the downstream
    upstream = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()  # the signal's time
    throttled = models.BooleanField(default=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["at", "id"]
        constraints = [models.UniqueConstraint(fields=["signal", "kpi"], name="signal_reaches_a_kpi_once")]
        indexes = [models.Index(fields=["kpi", "upstream", "at"], name="reviewsignal_throttle")]

    def __str__(self) -> str:
        return f"signal {self.signal_id} to {self.kpi_id}{' (throttled)' if self.throttled else ''}"

    @property
    def happened(self) -> str:
        """The signal's cause without the upstream KPI's name in front, for a page that shows the name beside it."""
        cause, name = self.signal.cause, self.upstream.name
        return cause[len(name) :].lstrip(" :") if cause.startswith(name) else cause
