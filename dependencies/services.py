"""Writes of the dependency graph; each is audited, and the graph stays acyclic."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction

from dependencies.models import Dependency
from dependencies.selectors import path_between
from governance.durations import format_duration
from governance.models import Organization, User
from governance.services.audit import audit_log
from scorecards.models import Kpi

FIELDS = ["upstream", "downstream", "kind", "lag", "note"]


@transaction.atomic
def dependency_create(
    *, actor: User | None, upstream: Kpi, downstream: Kpi, kind: str, lag: timedelta | None = None, note: str = ""
) -> Dependency:
    """`downstream` depends on `upstream`. An edge that would close a cycle is refused with the cycle it closes."""
    org = upstream.organization
    if downstream.organization_id != org.pk:
        raise ValidationError({"downstream": "Pick a KPI of this organization."})
    if upstream.pk == downstream.pk:
        raise ValidationError({"downstream": "A KPI cannot depend on itself."})
    if kind not in Dependency.Kind.values or kind == Dependency.Kind.COMPUTED_FROM:
        # "Computed from" edges follow the formulas (dependencies.formulas), never a hand.
        raise ValidationError({"kind": "Pick a kind of dependency."})
    # Graph writes take the organization's row lock (as a manifest apply does), so two edges that together
    # would close a cycle cannot both pass the check.
    Organization.objects.select_for_update().filter(pk=org.pk).exists()
    if Dependency.objects.filter(upstream=upstream, downstream=downstream).exists():
        raise ValidationError(f"{downstream.name} already depends on {upstream.name}.")
    back = path_between(org=org, start=downstream.pk, goal=upstream.pk)
    if back is not None:
        names = dict(Kpi.objects.filter(pk__in=back).values_list("pk", "key"))
        cycle = " -> ".join([upstream.key, *(names[pk] for pk in back)])
        raise ValidationError({"downstream": f"This edge would close the cycle {cycle}."})
    dependency = Dependency.objects.create(
        organization=org, upstream=upstream, downstream=downstream, kind=kind, lag=lag, note=note.strip()
    )
    audit_log(org=org, actor=actor, verb="dependency.created", obj=dependency, after=_snapshot(dependency))
    return dependency


@transaction.atomic
def dependency_delete(*, dependency: Dependency, actor: User | None) -> None:
    if dependency.kind == Dependency.Kind.COMPUTED_FROM:
        raise ValidationError("This edge comes from the KPI's formula; change the formula in the manifest instead.")
    before = _snapshot(dependency)
    org = dependency.upstream.organization
    dependency.delete()
    audit_log(org=org, actor=actor, verb="dependency.deleted", before=before)


def _snapshot(dependency: Dependency) -> dict:
    return {
        "upstream": dependency.upstream.key,
        "downstream": dependency.downstream.key,
        "kind": dependency.kind,
        "lag": format_duration(dependency.lag) if dependency.lag else None,
        "note": dependency.note,
    }
