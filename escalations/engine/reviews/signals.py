"""Status changes and surges become dependency signals on their upstream KPIs (SEMANTICS.md section 4)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.urls import reverse

from dependencies.models import Dependency
from escalations.models import (
    DependencySignal,
)
from governance.models import Organization
from scorecards.models import Kpi, Status, StatusChange, SurgeSignal

BATCH_SIZE = 500
SIGNALLED = {Status.AT_RISK, Status.OFF_TRACK, Status.STALE}


def kpi_url(kpi: Kpi, org: Organization) -> str:
    return reverse("scorecards:kpi_detail", args=[org.slug, kpi.pk])


def span(value: timedelta) -> str:
    """A window as people say it: "7 days", "12 hours", "90 minutes"."""
    for unit, size in (("day", timedelta(days=1)), ("hour", timedelta(hours=1))):
        if value >= size and not value % size:
            n = value // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{int(value.total_seconds() // 60)} minutes"


def and_list(names: list[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _with_downstream(kpi_ids: Iterable[int]) -> set[int]:
    return set(Dependency.objects.filter(upstream_id__in=set(kpi_ids)).values_list("upstream_id", flat=True).distinct())


def signals_from_changes(changes: list[StatusChange], kpis: dict[int, Kpi]) -> int:
    """In process_status_changes' batch transaction: the changes into a breach or stale of KPIs that something
    depends on become signals (a query to find those KPIs, one insert)."""
    relevant = [c for c in changes if c.new in SIGNALLED]
    if not relevant:
        return 0
    upstream = _with_downstream(c.kpi_id for c in relevant)
    signals = [
        DependencySignal(
            organization_id=c.organization_id,
            kpi_id=c.kpi_id,
            kind=DependencySignal.Kind.STATUS,
            at=c.changed_at,
            cause=f"{kpis[c.kpi_id].name} is {c.get_new_display().lower()}{': ' + c.reason if c.reason else ''}",
            value=c.value,
            trend=f"{c.get_old_display()} -> {c.get_new_display()}",
            status_change=c,
        )
        for c in relevant
        if c.kpi_id in upstream
    ]
    DependencySignal.objects.bulk_create(signals, ignore_conflicts=True)
    return len(signals)


def signals_from_surges(*, now: datetime, org_id: int | None) -> int:
    """Claims unprocessed SurgeSignal rows as process_status_changes claims status changes (FOR UPDATE SKIP LOCKED,
    processed_at in the same transaction); those of KPIs that something depends on become signals."""
    made = 0
    while True:
        with transaction.atomic():
            pending = SurgeSignal.objects.filter(processed_at=None)
            if org_id:
                pending = pending.filter(organization_id=org_id)
            batch = list(
                pending.select_related("kpi")
                .order_by("at", "id")
                .select_for_update(skip_locked=True, of=("self",))[:BATCH_SIZE]
            )
            if not batch:
                return made
            upstream = _with_downstream(s.kpi_id for s in batch)
            signals = [_surge_signal(s) for s in batch if s.kpi_id in upstream]
            DependencySignal.objects.bulk_create(signals, ignore_conflicts=True)
            SurgeSignal.objects.filter(pk__in=[s.pk for s in batch]).update(processed_at=now)
            made += len(signals)


def _surge_signal(surge: SurgeSignal) -> DependencySignal:
    kpi = surge.kpi
    unit = f" {kpi.unit}" if kpi.unit else ""
    window = f" over {span(kpi.surge_window)}" if kpi.surge_window else ""
    trend = f"{surge.change * 100:+.0f}%{unit}{window}"
    return DependencySignal(
        organization_id=surge.organization_id,
        kpi_id=kpi.pk,
        kind=DependencySignal.Kind.SURGE,
        at=surge.at,
        cause=f"{kpi.name} surged: {trend} ({surge.previous:g} -> {surge.current:g})",
        value=surge.current,
        trend=trend,
        surge=surge,
    )
