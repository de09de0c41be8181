from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from governance.models import Organization, TenantQuerySet
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
