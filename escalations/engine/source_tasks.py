"""Connector health: a data source failing N runs in a row (DataSource.task_after) gives the owners of the KPIs it
feeds a data-freshness task, one per failing period (the dedup key holds the period's first failed run); a good
run closes them. Part of the escalation sweep, so that it needs no beat entry of its own."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone

from escalations.engine.blocks import OPEN
from escalations.models import Task
from governance.services.audit import audit_log
from scorecards.models import DataSource, DataSourceRun, Kpi

KIND = Task.Kind.DATA_FRESHNESS
DUE_AFTER = timedelta(days=1)


def source_key(source: DataSource) -> str:
    return f"{source.organization_id}:source:{source.pk}:"


def failing_since(source: DataSource) -> DataSourceRun | None:
    """The first failed run of the source's current streak (after its last good run)."""
    runs = DataSourceRun.objects.filter(source=source).exclude(finished_at=None)
    last_good = runs.filter(error="").order_by("-started_at", "-pk").values("started_at").first()
    if last_good:
        runs = runs.filter(started_at__gt=last_good["started_at"])
    return runs.exclude(error="").order_by("started_at", "pk").first()


def advance_source_tasks(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Opens the tasks of sources failing task_after runs in a row and closes those of recovered sources; returns
    how many tasks it opened."""
    now = now or timezone.now()
    sources = DataSource.objects.filter(archived_at=None).select_related("organization")
    if org_id:
        sources = sources.filter(organization_id=org_id)
    opened = sum(_open(source, now) for source in sources.filter(failures__gte=F("task_after")))
    # Two queries a sweep when all is well: the failing sources above, the open tasks of sources below.
    open_tasks = Task.objects.filter(kind=KIND, state__in=OPEN, workstream=None, dedup_key__contains=":source:")
    if org_id:
        open_tasks = open_tasks.filter(organization_id=org_id)
    by_source: dict[int, list[int]] = {}
    for pk, key in open_tasks.values_list("pk", "dedup_key"):
        by_source.setdefault(int(key.split(":")[2]), []).append(pk)
    for source in sources.filter(pk__in=by_source, failures=0):
        Task.objects.filter(pk__in=by_source[source.pk]).update(state=Task.State.DONE, done_at=now)
        audit_log(org=source.organization, actor=None, verb="data_source.tasks_closed", obj=source, after={})
    return opened


def _open(source: DataSource, now: datetime) -> int:
    first = failing_since(source)
    if first is None:
        return 0
    keys = [pull.get("kpi") for pull in (source.config or {}).get("pulls", [])]
    kpis = Kpi.objects.for_org(source.organization).filter(key__in=keys, archived_at=None).order_by("key")
    owners: dict[int, Kpi] = {}
    for kpi in kpis:
        owners.setdefault(kpi.owner_id, kpi)  # one task per owner, on the first of their KPIs
    tasks = [
        Task(
            organization_id=source.organization_id,
            kind=KIND,
            assignee_id=owner,
            kpi=kpi,
            due_at=now + DUE_AFTER,
            created_at=now,
            dedup_key=f"{source_key(source)}{first.pk}:{KIND}:{owner}",
        )
        for owner, kpi in owners.items()
    ]
    Task.objects.bulk_create(tasks, ignore_conflicts=True)  # the keys make a repeated sweep write nothing
    new = Task.objects.filter(dedup_key__in=[t.dedup_key for t in tasks], created_at=now).count()
    if new:
        audit_log(
            org=source.organization,
            actor=None,
            verb="data_source.tasks_opened",
            obj=source,
            after={"failures": source.failures, "since_run": first.pk, "tasks": new},
        )
    return new
