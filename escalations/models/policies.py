"""Escalation policies and their levels."""

from __future__ import annotations

from django.core.validators import MaxValueValidator
from django.db import models

from governance.models import (
    Organization,
    TenantQuerySet,
    key_validator,
    single_line_validator,
)


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
