"""Where data comes from: pulled data sources and their runs, and CSV imports on their way in."""

from __future__ import annotations

from django.db import models
from django.utils.timezone import now

from governance.models import (
    Organization,
    TenantQuerySet,
    User,
    key_validator,
)


class DataSource(models.Model):
    """Where a KPI's data is pulled from; push-only KPIs have none. Credentials are named, never held: organization
    secrets, or environment variables the operator granted (scorecards.connectors.registry)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="data_sources")
    key = models.CharField(max_length=64, validators=[key_validator])
    kind = models.CharField(max_length=20)  # a kind of scorecards.connectors.registry
    every = models.DurationField()
    # Connector settings as in the manifest (dsn_secret, url, headers_secret, pulls: [{kpi, query}]); validated by
    # the manifest.
    config = models.JSONField(default=dict, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # The pull sweep's schedule: None runs at the next sweep; failures stretch the wait (backoff).
    next_run_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    # After this many failed runs in a row the owners of the KPIs it feeds get a data-freshness task
    # (escalations.engine.source_tasks), one per failing period.
    task_after = models.PositiveSmallIntegerField(default=3, db_default=3)
    paused_at = models.DateTimeField(null=True, blank=True)  # the sweep leaves a paused source alone

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="datasource_key_unique")]

    def __str__(self) -> str:
        return self.key


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
    sheet = models.CharField(max_length=100, blank=True, default="", db_default="")  # of a workbook; "" the first
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
