"""KPIs: what is measured, how it is judged, its schedule, its status changes and its owner's transfers."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils.timezone import now
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from governance.models import (
    Membership,
    Organization,
    Team,
    TenantQuerySet,
    User,
    key_validator,
    single_line_validator,
)
from scorecards.aggregations import LAST, aggregation_choices
from scorecards.models.sources import DataSource


class Direction(models.TextChoices):
    INCREASE = "increase", "Higher is better"
    DECREASE = "decrease", "Lower is better"
    RANGE = "range", "Inside a range"


class Status(models.TextChoices):
    ON_TRACK = "on_track", "On track"
    AT_RISK = "at_risk", "At risk"
    OFF_TRACK = "off_track", "Off track"
    STALE = "stale", "Stale"
    NO_DATA = "no_data", "No data"


# Worst first: rolling up several statuses takes the first one present.
STATUS_SEVERITY = [Status.OFF_TRACK, Status.AT_RISK, Status.STALE, Status.NO_DATA, Status.ON_TRACK]
# Better is higher, for telling a recovery from a breach.
STATUS_RANK = {Status.OFF_TRACK: 0, Status.AT_RISK: 1, Status.ON_TRACK: 2}


class Kpi(models.Model):
    # An evaluation that moves the value or the reason rewrites the KPI's row. PostgreSQL rewrites it in place, with
    # no new index entries, while no indexed column changes and its page has room: the schedule, whose index moves
    # at every evaluation, lives in KpiSchedule; the table leaves half of each page free (fillfactor, migration
    # 0007); and it keeps only the indexes that pay, the organization's own one being covered by the key and status
    # indexes that lead with it. Only a status change still takes a new entry in every index.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="kpis", db_index=False)
    key = models.CharField(max_length=64, validators=[key_validator])
    name = models.CharField(max_length=200, validators=[single_line_validator])
    description = models.TextField(blank=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="kpis")
    # Locked: changed only by scorecards.services.ownership_transfer_approve (and the manifest through it).
    owner = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="owned_kpis")
    unit = models.CharField(max_length=32, blank=True, validators=[single_line_validator])
    direction = models.CharField(max_length=10, choices=Direction.choices, default=Direction.INCREASE)
    aggregate_fn = models.CharField(max_length=32, choices=aggregation_choices, default=LAST)
    aggregate_window = models.DurationField(null=True, blank=True)
    target_value = models.FloatField(null=True, blank=True)
    target_by = models.DateField(null=True, blank=True)
    baseline_value = models.FloatField(null=True, blank=True)
    baseline_at = models.DateField(null=True, blank=True)
    # {"warning": 1000, "critical": 800}, relative {"warning": "95%", ...}, or range pairs [lo, hi].
    thresholds = models.JSONField()
    cadence = models.DurationField()
    stale_after = models.DurationField()
    evaluate_every = models.DurationField()
    pending_for = models.DurationField()
    keep_for = models.DurationField()
    recovery_margin = models.CharField(max_length=16, blank=True, help_text='In the unit ("5") or percent ("2%")')
    surge_change = models.CharField(max_length=16, blank=True, help_text='e.g. "30%"')
    surge_window = models.DurationField(null=True, blank=True)
    forecast = models.BooleanField(default=False)
    escalation = models.CharField(max_length=64, blank=True, help_text="Escalation policy key")
    # Indexed only where set (kpi_data_source): most KPIs are pushed and have none.
    data_source = models.ForeignKey(
        DataSource, null=True, blank=True, on_delete=models.SET_NULL, related_name="kpis", db_index=False
    )
    # A calculated KPI: its measurements come from this formula over other KPIs (scorecards.formulas), set only by
    # the manifest; formula_reason says why it has no value now ("fin.revenue is 0"), empty while it has one.
    formula = models.TextField(blank=True, default="", db_default="")
    formula_reason = models.TextField(blank=True, default="", db_default="")
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)

    # State kept by the evaluator (its schedule is in KpiSchedule).
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NO_DATA)
    status_since = models.DateTimeField(null=True, blank=True)
    pending_status = models.CharField(max_length=10, choices=Status.choices, blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_measured_at = models.DateTimeField(null=True, blank=True)
    # Moved by every measurement write (scorecards.ingestion.store), under the KPI lock it already takes: the
    # scorecard's cached rows (scorecards.row_cache) key on it, as nothing else on this row says a back-dated point
    # changed the sparkline.
    series_version = models.PositiveBigIntegerField(default=0, db_default=0)
    last_surge_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    error = models.TextField(blank=True)
    error_count = models.PositiveIntegerField(default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="kpi_key_unique_per_org")]
        indexes = [
            models.Index(fields=["organization", "status"], name="kpi_org_status"),
            models.Index(fields=["data_source"], name="kpi_data_source", condition=Q(data_source__isnull=False)),
        ]
        permissions = [("configure_kpi", "Edit the KPI's thresholds and evaluation settings")]

    def __str__(self) -> str:
        return self.name

    # The schedule, read through the KPI; a KPI without a KpiSchedule row has never been scheduled.
    @property
    def next_evaluation_at(self) -> datetime | None:
        schedule = getattr(self, "schedule", None)
        return schedule.next_evaluation_at if schedule else None

    @property
    def needs_evaluation(self) -> bool:
        schedule = getattr(self, "schedule", None)
        return schedule.needs_evaluation if schedule else False

    @property
    def evaluated_at(self) -> datetime | None:
        schedule = getattr(self, "schedule", None)
        return schedule.evaluated_at if schedule else None

    @property
    def pending_wait(self) -> timedelta:
        """How long the pending status must hold: keep_for when it is a recovery from a breach, else pending_for."""
        breached = self.status in (Status.AT_RISK, Status.OFF_TRACK)
        better = STATUS_RANK.get(self.pending_status, 0) > STATUS_RANK.get(self.status, 0)
        return self.keep_for if breached and better else self.pending_for


class KpiSchedule(models.Model):
    """When the evaluator looks at a KPI next, and when it last did: a narrow row of its own, because every
    evaluation moves it (and with it an index entry) while the KPI's wide row changes only with its value, reason
    or status. A KPI without one has never been scheduled: nothing is due, nothing was evaluated."""

    kpi = models.OneToOneField(Kpi, on_delete=models.CASCADE, primary_key=True, related_name="schedule")
    # Every query goes through the KPI (or its id): an index of its own would only slow the sweep's writes.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    next_evaluation_at = models.DateTimeField(null=True, blank=True)  # None while the KPI is archived
    # New data asks for an evaluation at the next sweep without moving the evaluate_every grid.
    needs_evaluation = models.BooleanField(default=False)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=0)  # one more for each evaluation

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["next_evaluation_at"], name="kpischedule_due"),
            models.Index(fields=["kpi"], name="kpischedule_needs_evaluation", condition=Q(needs_evaluation=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kpi_id} next at {self.next_evaluation_at}"


class StatusChange(models.Model):
    """An official status change, written with the new status; escalations claims it (the outbox)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="status_changes")
    old = models.CharField(max_length=10, choices=Status.choices)
    new = models.CharField(max_length=10, choices=Status.choices)
    value = models.FloatField(null=True, blank=True)
    thresholds = models.JSONField(default=dict)
    reason = models.TextField(blank=True)
    changed_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["processed_at"], name="statuschange_unprocessed", condition=Q(processed_at=None))
        ]
        # One decision, one row: a redelivered or racing sweep cannot record the same change twice.
        constraints = [models.UniqueConstraint(fields=["kpi", "changed_at"], name="statuschange_one_per_evaluation")]

    def __str__(self) -> str:
        return f"{self.kpi_id}: {self.old} -> {self.new} at {self.changed_at:%Y-%m-%d %H:%M}"


class SurgeSignal(models.Model):
    """The aggregated value moved by at least `surge.change` against the previous window (at most once per window)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="surges")
    at = models.DateTimeField()
    previous = models.FloatField()
    current = models.FloatField()
    change = models.FloatField(help_text="Fraction: 0.42 is +42%")
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-at"]
        constraints = [models.UniqueConstraint(fields=["kpi", "at"], name="surge_one_per_evaluation")]

    def __str__(self) -> str:
        return f"{self.kpi_id} surged {self.change:+.0%} at {self.at:%Y-%m-%d %H:%M}"


class OwnershipTransfer(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="transfers")
    from_owner = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="+")
    to_owner = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=now)
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(fields=["kpi"], condition=Q(state="pending"), name="one_pending_transfer_per_kpi")
        ]

    def __str__(self) -> str:
        return f"{self.kpi_id}: {self.from_owner_id} -> {self.to_owner_id} ({self.state})"


class KpiUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Kpi, on_delete=models.CASCADE)


class KpiGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Kpi, on_delete=models.CASCADE)
