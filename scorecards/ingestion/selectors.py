"""Reads of what comes in: CSV import jobs, data sources, their runs and the KPIs they feed."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import OuterRef, QuerySet, Subquery

from governance.models import Organization
from scorecards.connectors.registry import credentials
from scorecards.models import DataSource, DataSourceRun, ImportJob, Kpi


def import_jobs(*, org: Organization) -> QuerySet[ImportJob]:
    """CSV imports, newest first, without their files (megabytes each until the import has finished)."""
    return ImportJob.objects.for_org(org).defer("content").select_related("created_by")


# --- data sources -------------------------------------------------------------------------------


@dataclass
class SourceFeeds:
    """What a data source's pulls feed: live KPIs in pull order, and keys that name none (its runs fail)."""

    kpis: list[Kpi] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def data_source_list(*, org: Organization) -> QuerySet[DataSource]:
    """Live sources with their newest run's id and the end of their last good run."""
    runs = DataSourceRun.objects.filter(source=OuterRef("pk")).order_by("-started_at", "-id")
    good = runs.filter(error="").exclude(finished_at=None)
    return (
        DataSource.objects.for_org(org)
        .filter(archived_at=None)
        .annotate(last_run_id=Subquery(runs.values("pk")[:1]), last_good_at=Subquery(good.values("finished_at")[:1]))
    )


def data_source_feeds(*, org: Organization, sources: list[DataSource]) -> dict[int, SourceFeeds]:
    """The KPIs each source's pulls name, in one query for all of them."""
    keys = {pull.get("kpi") for source in sources for pull in (source.config or {}).get("pulls", [])}
    kpis = {kpi.key: kpi for kpi in Kpi.objects.for_org(org).filter(key__in=keys - {None}, archived_at=None)}
    feeds = {}
    for source in sources:
        feeds[source.pk] = feed = SourceFeeds()
        for pull in (source.config or {}).get("pulls", []):
            key = pull.get("kpi")
            if key in kpis:
                feed.kpis.append(kpis[key])
            else:
                feed.missing.append(str(key))
    return feeds


def data_source_secret_references(org: Organization) -> dict[str, list[str]]:
    """Which live sources name which organization secret (registered with governance.secrets)."""
    used: dict[str, list[str]] = defaultdict(list)
    for source in DataSource.objects.for_org(org).filter(archived_at=None).only("key", "config"):
        for name in sorted({name for _, origin, name in credentials(source) if origin == "secret"}):
            used[name].append(f"data source {source.key}")
    return used


def data_source_runs(*, source: DataSource) -> QuerySet[DataSourceRun]:
    return source.runs.select_related("requested_by")
