from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
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


class Direction(models.TextChoices):
    INCREASE = "increase", "Higher is better"
    DECREASE = "decrease", "Lower is better"
    RANGE = "range", "Inside a range"


class Aggregate(models.TextChoices):
    LAST = "last", "Last value"
    SUM = "sum", "Sum"
    AVG = "avg", "Average"
    MIN = "min", "Minimum"
    MAX = "max", "Maximum"


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


class DataSource(models.Model):
    """Where a KPI's data is pulled from; push-only KPIs have none. Credentials are named, never held: organization
    secrets, or environment variables the operator granted (scorecards.connectors)."""

    class Kind(models.TextChoices):
        SQL = "sql", "SQL query"
        HTTP_JSON = "http_json", "HTTP JSON"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="data_sources")
    key = models.CharField(max_length=64, validators=[key_validator])
    kind = models.CharField(max_length=20, choices=Kind.choices)
    every = models.DurationField()
    # Connector settings as in the manifest (dsn_secret, url, headers_secret, pulls: [{kpi, query}]); validated by
    # the manifest.
    config = models.JSONField(default=dict, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # The pull sweep's schedule: None runs at the next sweep; failures stretch the wait (backoff).
    next_run_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="datasource_key_unique")]

    def __str__(self) -> str:
        return self.key

    def credentials(self) -> list[tuple[str, str, str]]:
        """(what it is for, "secret" or "env", name) for every credential the source names."""
        config = self.config or {}
        found = []
        if config.get("dsn_secret") or config.get("dsn_env"):
            origin = "secret" if config.get("dsn_secret") else "env"
            found.append(("database address", origin, config.get(f"dsn_{origin}")))
        for origin in ("secret", "env"):
            for header, name in sorted((config.get(f"headers_{origin}") or {}).items()):
                found.append((f"{header} header", origin, name))
        return found


class DataSourceRun(models.Model):
    """One pull of a data source: when, how many rows, and the error that stopped it, if any."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Run now"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey(DataSource, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.SCHEDULE)
    requested_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(default=now)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["source", "-started_at"], name="datasourcerun_recent")]

    def __str__(self) -> str:
        return f"{self.source_id} run at {self.started_at:%Y-%m-%d %H:%M}"


class ImportJob(models.Model):
    """A CSV file of measurements on its way in; large files are checked and stored by a worker."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        CHECKING = "checking", "Checking rows"
        STORING = "storing", "Storing"
        DONE = "done", "Imported"
        FAILED = "failed", "Rejected"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    filename = models.CharField(max_length=255)
    # The file itself, so a worker on another machine can read it; emptied once the import has finished.
    content = models.BinaryField(blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_checked = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)  # [{"line": 70001, "message": "..."}], capped
    error_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import of {self.filename}"


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
    aggregate_fn = models.CharField(max_length=4, choices=Aggregate.choices, default=Aggregate.LAST)
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
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)

    # State kept by the evaluator (its schedule is in KpiSchedule).
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NO_DATA)
    status_since = models.DateTimeField(null=True, blank=True)
    pending_status = models.CharField(max_length=10, choices=Status.choices, blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_measured_at = models.DateTimeField(null=True, blank=True)
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


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MeasurementManager(models.Manager.from_queryset(TenantQuerySet)):
    """Only the points within the bounds ingestion enforces (settings.MEASUREMENT_MAX_ABS, not before 1970).

    A point stored before the bounds existed (a year-0001 time PostgreSQL keeps but psycopg cannot read, a value
    whose sum overflows) must not break a page, an export or the sweep: no ORM read sees it. `Measurement._base_manager`
    still does, for an operator who deletes them."""

    def get_queryset(self):
        bound = settings.MEASUREMENT_MAX_ABS
        return super().get_queryset().filter(at__gte=EPOCH, value__gte=-bound, value__lte=bound)


class Measurement(models.Model):
    # The busiest table: its foreign keys are not enforced by PostgreSQL, whose per-row checks at commit cost
    # more than the inserts themselves. Ingestion writes only KPI ids it resolved in the organization and holds
    # those KPIs locked until commit; deletes cascade through Django (KPIs are archived, not deleted).
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    # No index of its own: the unique (kpi, at) index leads with it, and every index slows ingestion.
    kpi = models.ForeignKey(
        Kpi, on_delete=models.CASCADE, related_name="measurements", db_index=False, db_constraint=False
    )
    at = models.DateTimeField()
    value = models.FloatField()
    source = models.CharField(max_length=20, default="api")
    ingested_at = models.DateTimeField(default=now)

    objects = MeasurementManager()

    class Meta:
        ordering = ["kpi", "at"]
        # Also serves "newest first" reads (scanned backwards); a second (kpi, -at) index only slowed writes.
        constraints = [models.UniqueConstraint(fields=["kpi", "at"], name="measurement_unique_per_kpi_and_time")]

    def __str__(self) -> str:
        return f"{self.kpi_id}@{self.at:%Y-%m-%d %H:%M}={self.value}"


class MeasurementRevision(models.Model):
    """A value that a later delivery for the same (kpi, at) replaced: nothing sent is ever lost."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    measurement = models.ForeignKey(Measurement, on_delete=models.CASCADE, related_name="revisions")
    value = models.FloatField()
    source = models.CharField(max_length=20)
    ingested_at = models.DateTimeField()
    replaced_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-replaced_at"]

    def __str__(self) -> str:
        return f"revision of {self.measurement_id}: {self.value}"


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


class Objective(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="objectives")
    key = models.CharField(max_length=64, validators=[key_validator])
    title = models.CharField(max_length=200, validators=[single_line_validator])
    owner = models.ForeignKey(Membership, on_delete=models.PROTECT, related_name="owned_objectives")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="objectives")
    period_start = models.DateField()
    period_end = models.DateField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["period_start", "title"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="objective_key_unique"),
            models.CheckConstraint(condition=Q(period_end__gte=models.F("period_start")), name="objective_period"),
        ]

    def __str__(self) -> str:
        return self.title


class KeyResult(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    objective = models.ForeignKey(Objective, on_delete=models.CASCADE, related_name="key_results")
    key = models.CharField(max_length=64, validators=[key_validator])
    title = models.CharField(max_length=200, validators=[single_line_validator])
    # Progress follows the KPI when linked; otherwise its owner checks values in.
    kpi = models.ForeignKey(Kpi, null=True, blank=True, on_delete=models.PROTECT, related_name="key_results")
    owner = models.ForeignKey(Membership, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    start = models.FloatField()
    target = models.FloatField()
    current = models.FloatField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["objective", "key"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="keyresult_key_unique"),
            models.CheckConstraint(
                condition=Q(kpi__isnull=False) | Q(owner__isnull=False), name="keyresult_kpi_or_owner"
            ),
        ]

    def __str__(self) -> str:
        return self.title


class CheckIn(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key_result = models.ForeignKey(KeyResult, on_delete=models.CASCADE, related_name="check_ins")
    value = models.FloatField()
    note = models.TextField(blank=True)
    by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.key_result_id}={self.value}"


class Scorecard(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="scorecards")
    key = models.CharField(max_length=64, validators=[key_validator])
    name = models.CharField(max_length=200, validators=[single_line_validator])
    kpis = models.ManyToManyField(Kpi, blank=True, related_name="scorecards")
    teams = models.ManyToManyField(Team, blank=True, related_name="scorecards")
    # Who sees it: "role:<role>", "team:<key>", "user:<email>"; empty means every member.
    viewers = models.JSONField(default=list, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="scorecard_key_unique")]

    def __str__(self) -> str:
        return self.name


# Direct foreign keys for guardian: an admin may let a delegate configure one KPI without owning it.
class KpiUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Kpi, on_delete=models.CASCADE)


class KpiGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Kpi, on_delete=models.CASCADE)
