from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.core.validators import MaxValueValidator, URLValidator
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from governance.models import (
    Membership,
    Organization,
    TenantQuerySet,
    User,
    key_validator,
    single_line,
    single_line_validator,
)
from scorecards.models import Kpi, Status, StatusChange, SurgeSignal


class EscalationPolicy(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=64, validators=[key_validator])
    name = models.CharField(max_length=200, validators=[single_line_validator])
    mitigation_due = models.DurationField()
    ack_timeout = models.DurationField()
    repeat = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(9)])
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="policy_key_unique")]

    def __str__(self) -> str:
        return self.name


class EscalationLevel(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="levels")
    position = models.PositiveSmallIntegerField()
    # owner | team_lead | "role:<role>" | "team:<key>" | "user:<email>"
    targets = models.JSONField()
    wait = models.DurationField()
    business_hours = models.BooleanField(default=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["policy", "position"]
        constraints = [models.UniqueConstraint(fields=["policy", "position"], name="level_position_unique")]

    def __str__(self) -> str:
        return f"{self.policy_id} level {self.position}"


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
    # The escalation policy as it was when the episode opened (escalations.timing.Policy.as_json()).
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
    # value and the upstream's resolution time (escalations.sweeps.release_downstream).
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

    The owner gets one review task for everything reaching them within GROUP_WINDOW (escalations.reviews): the
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
    policy = models.JSONField(default=dict)  # escalations.timing.Policy.as_json() of the upstream's policy
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


class Notification(models.Model):
    """One message to one person on one channel; the dedup key makes a retried sweep harmless."""

    class Channel(models.TextChoices):
        IN_APP = "in_app", "In the app"
        EMAIL = "email", "Email"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=30)  # a Task.Kind, or resolved / exhausted / path_reviewed / ...
    channel = models.CharField(max_length=10, choices=Channel.choices)
    dedup_key = models.CharField(max_length=200)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    url = models.CharField(max_length=300, blank=True)
    # Structured content for messages with a layout of their own (the weekly digest's email), stored when the
    # notification is written so that a retried delivery sends the same message.
    payload = models.JSONField(default=dict, blank=True)
    workstream = models.ForeignKey(
        Workstream, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    created_at = models.DateTimeField(default=now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["dedup_key", "channel"], name="notification_once_per_channel")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(delivered_at__isnull=True), name="notification_undelivered"
            ),
            models.Index(fields=["recipient", "read_at"], name="notification_unread"),
            models.Index(fields=["created_at"], name="notification_created"),  # pruning
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient_id}: {self.subject}"

    @property
    def email_subject(self) -> str:
        """The one place an email subject is made: names stored before they had to be one line (a KPI named
        "Sales\r\nBcc: ...") must not make the header, so the email, fail."""
        return single_line(f"[{self.organization}] {self.subject}")


class NotificationPreference(models.Model):
    """A member's opt-out of one kind of notification on one channel (everything is on by default)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="notification_preferences")
    kind = models.CharField(max_length=30)
    channel = models.CharField(max_length=10, choices=Notification.Channel.choices)
    enabled = models.BooleanField(default=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["membership", "kind", "channel"], name="one_preference_per_kind_channel")
        ]

    def __str__(self) -> str:
        return f"{self.membership_id} {self.kind}/{self.channel}: {'on' if self.enabled else 'off'}"


class Webhook(models.Model):
    """An endpoint that hears about workstream events (opened, escalated, resolved, ...), signed with its secret.

    The signing secret is never stored: it is an HMAC under settings.WEBHOOK_KEY of the webhook's id and
    `secret_version`, so a leaked database reveals no secret, and rotating is bumping the version.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100, validators=[single_line_validator])
    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    slack_format = models.BooleanField(default=False, help_text='Send {"text": ...} for a Slack incoming webhook')
    is_active = models.BooleanField(default=True)
    secret_version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def secret(self) -> str:
        message = f"webhook:{self.pk}:{self.secret_version}".encode()
        return "whsec_" + hmac.new(settings.WEBHOOK_KEY.encode(), message, hashlib.sha256).hexdigest()

    def sign(self, body: bytes) -> str:
        """The X-Steerco-Signature header's value for `body`, the exact bytes sent."""
        return "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDelivery(models.Model):
    """One event for one webhook, created in the transaction of the event; a sweep posts it, retrying failures."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)  # workstream.opened, workstream.escalated, ..., ping
    payload = models.JSONField()
    # A replayed event or a redelivered sweep never posts twice: one row per webhook and event.
    dedup_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=now)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # None: delivered or given up
    delivered_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # of the last attempt
    error = models.TextField(blank=True)  # of the last attempt
    # Every attempt: {"at": iso, "status": int | null, "error": str, "ms": int}.
    attempt_log = models.JSONField(default=list)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["webhook", "dedup_key"], name="webhook_delivery_once")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(delivered_at__isnull=True), name="webhook_delivery_due"
            ),
            models.Index(fields=["created_at"], name="webhook_delivery_created"),  # pruning
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.webhook_id}"

    @property
    def state(self) -> str:
        if self.delivered_at:
            return "delivered"
        if self.next_attempt_at is None:
            return "failed"
        return "retrying" if self.attempts else "pending"


# --- executive reviews and the decision log ---------------------------------------------------------------------


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
    once by escalations.deciding.decision_record, in the transaction of the effect it describes, wherever the
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
