"""Attested manual values: a KPI no system holds is declared manual (its period, updaters and approver); a person
enters each period's value and a second person confirms it before it counts (docs/manual-values.md)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from governance.models import Membership, Organization, TenantQuerySet, User
from scorecards.models.kpis import Kpi
from scorecards.models.measurements import Measurement


class Period(models.TextChoices):
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"
    QUARTERLY = "quarterly", "Quarterly"


class ManualKpi(models.Model):
    """How a manual KPI is kept: its period, who may enter values (nobody named: the owner) and who confirms them
    (one member, or every active member of a role). Written only by the manifest (scorecards.manual)."""

    # Its own id, not the KPI's: row-level security reaches the updaters' link rows through the parent's `id`.
    kpi = models.OneToOneField(Kpi, on_delete=models.CASCADE, related_name="manual")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTHLY)
    updaters = models.ManyToManyField(Membership, blank=True, related_name="+")
    approver = models.ForeignKey(Membership, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    approver_role = models.CharField(max_length=16, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(approver__isnull=False) ^ ~Q(approver_role=""), name="manualkpi_one_approver"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kpi_id} manual {self.period}"


class ManualValue(models.Model):
    """One value entered for one period. Only a confirmed value counts (it is the period's Measurement); a confirmed
    period is locked, and a correction is a new value with its reason that waits for confirmation again."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for confirmation"
        CONFIRMED = "confirmed", "Confirmed"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Corrected later"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kpi = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="manual_values")
    period_start = models.DateField()  # the period's first day in the organization's calendar
    value = models.FloatField()
    note = models.TextField(blank=True)
    # A link to where the evidence is kept; uploaded files come with attachments (issue 21).
    evidence_url = models.URLField(max_length=500, blank=True)
    # Required when the period was locked: why a confirmed value is corrected.
    correction_reason = models.TextField(blank=True)
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    entered_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    entered_at = models.DateTimeField(default=now)
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)
    measurement = models.ForeignKey(
        Measurement, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-period_start", "-entered_at", "-id"]
        constraints = [
            # One value waits per period, and one counts: entries racing for a period cannot both land.
            models.UniqueConstraint(
                fields=["kpi", "period_start"], condition=Q(state="pending"), name="manualvalue_one_pending"
            ),
            models.UniqueConstraint(
                fields=["kpi", "period_start"], condition=Q(state="confirmed"), name="manualvalue_one_confirmed"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kpi_id} {self.period_start}: {self.value} ({self.state})"
