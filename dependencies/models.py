from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from governance.models import Organization, TenantQuerySet, User
from scorecards.models import Kpi


class Dependency(models.Model):
    """`downstream` depends on `upstream`: a change upstream must reach the downstream owner."""

    class Kind(models.TextChoices):
        DRIVES_DEMAND = "drives_demand", "Drives demand"
        CONSUMES_CAPACITY = "consumes_capacity", "Consumes capacity"
        BLOCKS = "blocks", "Blocks"
        INFORMS = "informs", "Informs"
        # From a calculated KPI (upstream) to each input of its formula (dependencies.formulas), never by hand.
        COMPUTED_FROM = "computed_from", "Computed from"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    upstream = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="downstream_edges")
    downstream = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="upstream_edges")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    lag = models.DurationField(null=True, blank=True)
    note = models.TextField(blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["upstream", "downstream"], name="dependency_unique_edge"),
            models.CheckConstraint(condition=~Q(upstream=F("downstream")), name="dependency_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.upstream_id} -> {self.downstream_id} ({self.kind})"


class SuggestedDependency(models.Model):
    """A dependency the data suggests (dependencies.discovery): `downstream`'s daily changes follow `upstream`'s
    by `lag_days`. Both owners answer: both confirming draws the edge, either dismissing (with a reason) closes it.
    A dismissed pair stays dismissed unless a later run measures |r| at least RESUGGEST_MARGIN above the dismissed
    one (dependencies.suggestions)."""

    class State(models.TextChoices):
        SUGGESTED = "suggested", "Suggested"
        CONFIRMED = "confirmed", "Confirmed"
        DISMISSED = "dismissed", "Dismissed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    upstream = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="+")
    downstream = models.ForeignKey(Kpi, on_delete=models.CASCADE, related_name="+")
    coefficient = models.FloatField()  # Pearson's r of the daily changes, upstream leading by lag_days
    lag_days = models.PositiveSmallIntegerField()
    points = models.PositiveIntegerField()  # days both series had a change
    p_value = models.FloatField()
    q_value = models.FloatField()  # Benjamini-Hochberg over every pair and lag tried in that run
    computed_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.SUGGESTED)
    upstream_confirmed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    downstream_confirmed_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)  # why it was dismissed
    dismissed_coefficient = models.FloatField(null=True, blank=True)  # |r| when dismissed: the bar to come back
    dependency = models.ForeignKey(Dependency, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-computed_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["upstream", "downstream"], name="suggestion_unique_pair"),
            models.CheckConstraint(condition=~Q(upstream=F("downstream")), name="suggestion_not_self"),
        ]
        indexes = [models.Index(fields=["organization", "state"], name="suggestion_org_state")]

    def __str__(self) -> str:
        return f"{self.upstream_id} -> {self.downstream_id} r={self.coefficient:.2f} lag {self.lag_days}d"
