"""Objectives, their key results and check-ins, and scorecards (named sets of KPIs)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from governance.models import (
    Membership,
    Organization,
    Team,
    TenantQuerySet,
    User,
    key_validator,
    single_line_validator,
)
from scorecards.models.kpis import Kpi


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
