"""The points a KPI is judged by, and the values a later delivery replaced."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.utils.timezone import now

from governance.models import (
    Organization,
    TenantQuerySet,
)
from scorecards.models.kpis import Kpi

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NonFinite(float):
    """What a JSON parser (the API's, a pull's) makes of NaN and Infinity, so that they are rejected item by item."""


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
    # Not enforced by PostgreSQL: measurements are partitioned by month, and a partitioned table's id is unique only
    # with its time (scorecards 0015). Deletes cascade through Django.
    measurement = models.ForeignKey(
        Measurement, on_delete=models.CASCADE, related_name="revisions", db_constraint=False
    )
    value = models.FloatField()
    source = models.CharField(max_length=20)
    ingested_at = models.DateTimeField()
    replaced_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-replaced_at"]

    def __str__(self) -> str:
        return f"revision of {self.measurement_id}: {self.value}"
