"""The demo's two scheduled pulls and their history of runs (called by `seed_demo` after the scorecards)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.utils import timezone

from governance import tenancy
from governance.models import Membership, Organization, Role
from governance.services.secrets import secret_set
from scorecards.models import (
    DataSource,
    DataSourceRun,
    Kpi,
    Measurement,
)

# --- data sources -------------------------------------------------------------------------------------------

WAREHOUSE_KPIS = ("sc.inventory_turnover", "sc.otif")
WAREHOUSE_QUERY = "select day as at, {column} as value from kpi.daily_supply_chain where day > :since order by day"
PANEL_KPI = "mkt.brand_nps"
PANEL_HOST = "panel.example-agency.test"
PULL_HISTORY_DAYS = 10
WAREHOUSE_SECRET, PANEL_SECRET = "warehouse_dsn", "nps_panel_token"


def seed_data_sources(org: Organization) -> None:
    """Two scheduled pulls with a history of runs: the warehouse (healthy; one query timed out last week) and
    the NPS agency's API (failing since its token stopped working, which is why Brand NPS went stale).

    Neither reaches a real system: once the demo runs, each records a clear error at its next run and then
    backs off to every 6 hours, so the workers never fail a pull every minute.
    """
    tz, moment = org.tzinfo, timezone.now()
    today = moment.astimezone(tz).date()
    by_key = {kpi.key: kpi for kpi in Kpi.objects.for_org(org).filter(key__in=[*WAREHOUSE_KPIS, PANEL_KPI])}
    runs: list[DataSourceRun] = []
    admin = Membership.objects.filter(organization=org, role=Role.ADMIN).select_related("user").first()
    # The credentials the sources name, as the admin set them (Administration → Secrets); only the organization's
    # own scope sees secrets, not the seeding command's.
    with tenancy.scope(organization=org.pk):
        for name, value in [
            (WAREHOUSE_SECRET, "postgresql://steerco_reader@warehouse.acme.test:5432/kpis"),
            (PANEL_SECRET, "Bearer demo-agency-token-since-rotated"),
        ]:
            secret_set(org=org, actor=admin.user if admin else None, name=name, value=value)

    def local(day: date, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)

    def run(source: DataSource, at: datetime, took: timedelta, rows: int = 0, error: str = "") -> None:
        runs.append(
            DataSourceRun(organization=org, source=source, started_at=at, finished_at=at + took, rows=rows, error=error)
        )

    if all(key in by_key for key in WAREHOUSE_KPIS):
        warehouse = DataSource.objects.create(
            organization=org,
            key="warehouse",
            kind="sql",
            every=timedelta(days=1),
            config={
                "dsn_secret": WAREHOUSE_SECRET,
                "pulls": [
                    {"kpi": "sc.inventory_turnover", "query": WAREHOUSE_QUERY.format(column="inventory_turnover")},
                    {"kpi": "sc.otif", "query": WAREHOUSE_QUERY.format(column="otif_pct")},
                ],
            },
        )
        # Daily at 08:05, just after the nightly load; four days ago the OTIF query hit the statement timeout
        # and the retry six hours later (the backoff) caught up.
        days = [today - timedelta(days=n) for n in range(PULL_HISTORY_DAYS, -1, -1)]
        for day in days:
            at = local(day, 8, 5)
            if at > moment:
                continue
            if day == today - timedelta(days=4):
                error = "the query for sc.otif ran longer than 30 s and was cancelled"
                run(warehouse, at, timedelta(seconds=30.4), error=error)
                run(warehouse, at + timedelta(hours=6), timedelta(seconds=6.2), rows=2)
            else:
                run(warehouse, at, timedelta(seconds=4.1), rows=2)
        next_day = today if local(today, 8, 5) > moment else today + timedelta(days=1)
        warehouse.next_run_at = local(next_day, 8, 5)
        warehouse.save(update_fields=["next_run_at"])
        Kpi.objects.filter(organization=org, key__in=WAREHOUSE_KPIS).update(data_source=warehouse)
        Measurement.objects.filter(kpi__in=[by_key[key] for key in WAREHOUSE_KPIS]).update(source="pull")

    if PANEL_KPI in by_key:
        panel = DataSource.objects.create(
            organization=org,
            key="nps-panel",
            kind="http_json",
            every=timedelta(days=1),
            config={
                "url": f"https://{PANEL_HOST}/v2/scores?metric=brand_nps&since={{since}}",
                "headers_secret": {"Authorization": PANEL_SECRET},
                "pulls": [{"kpi": PANEL_KPI, "items": "results", "at": "week_ending", "value": "nps"}],
            },
        )
        # Good daily runs until the agency rotated its token; since then every run is refused, retried every
        # 6 hours (a daily source's backoff is capped there).
        last_good = by_key[PANEL_KPI].last_measured_at
        stopped = last_good.astimezone(tz).date() if last_good else today - timedelta(days=6)
        for n in range(PULL_HISTORY_DAYS - 4, -1, -1):
            run(panel, local(stopped - timedelta(days=n), 9), timedelta(seconds=1.3), rows=1)
        at, failures = local(stopped + timedelta(days=1), 9), 0
        while at <= moment:
            run(panel, at, timedelta(seconds=0.4), error=f"{PANEL_HOST} answered HTTP 401 Unauthorized")
            at, failures = at + timedelta(hours=6), failures + 1
        panel.failures, panel.next_run_at = failures, at
        panel.save(update_fields=["failures", "next_run_at"])
        Kpi.objects.filter(organization=org, key=PANEL_KPI).update(data_source=panel)
        Measurement.objects.filter(kpi=by_key[PANEL_KPI]).update(source="pull")

    DataSourceRun.objects.bulk_create(runs)
