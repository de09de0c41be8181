"""How measurements are kept over time (docs/measurements.md): monthly partitions made ahead on PostgreSQL, and each
organization's raw points past its retention rolled up into one point per KPI and day."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from governance.models import Organization
from scorecards.aggregations import AGGREGATIONS, LAST
from scorecards.charts.sparkline import WINDOW
from scorecards.models import Kpi, Measurement

ROLLUP = "rollup"  # the source of a day's point made of that day's raw points
KPIS_PER_TRANSACTION = 200
CHUNK = 500  # rows per statement: SQLite limits the parameters of one statement


def measurement_partitions_ensure(*, months_ahead: int | None = None) -> list[str]:
    """Makes this month's partition and the next `months_ahead` ones that are missing; returns the names made.
    Two calls at once make each partition once (the database function takes a lock). SQLite keeps one table."""
    if connection.vendor != "postgresql":
        return []
    ahead = settings.MEASUREMENT_PARTITIONS_AHEAD if months_ahead is None else months_ahead
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT steerco_measurement_partitions(%s)", [ahead])
        return [name for (name,) in cursor.fetchall()]


def roll_up_cutoff(org: Organization, now: datetime) -> datetime | None:
    """The start of the organization's local day that is `raw_measurement_days` old: points before it are rolled
    up, so that a day is rolled up whole or not at all."""
    if org.raw_measurement_days is None:
        return None
    day = (now - timedelta(days=org.raw_measurement_days)).astimezone(org.tzinfo).date()
    return datetime.combine(day, datetime.min.time(), tzinfo=org.tzinfo)


def measurements_roll_up(*, org: Organization, now: datetime | None = None) -> int:
    """Replaces the organization's raw points before its cutoff by one point per KPI and local day: the KPI's
    aggregation (sum, average, last...) of that day's values, stored at the day's last point's time, so that a
    chart or an evaluation window over old days reads the same sums and last values. Returns the points removed.

    Idempotent: every point before the cutoff ends up as its day's only point, marked ROLLUP, which a later run
    leaves alone. Each batch of KPIs is one transaction that locks them as ingestion does; a second run at the same
    time skips the KPIs the first one holds, and finds them done when it looks again."""
    cutoff = roll_up_cutoff(org, now or timezone.now())
    if cutoff is None:
        return 0
    raw = Measurement._base_manager.filter(organization=org, at__lt=cutoff).exclude(source=ROLLUP)
    kpi_ids = sorted(set(raw.order_by().values_list("kpi_id", flat=True).distinct()))
    return sum(
        _roll_up_kpis(org, kpi_ids[start : start + KPIS_PER_TRANSACTION], cutoff)
        for start in range(0, len(kpi_ids), KPIS_PER_TRANSACTION)
    )


@transaction.atomic
def _roll_up_kpis(org: Organization, kpi_ids: list[int], cutoff: datetime) -> int:
    locked = Kpi.objects.filter(organization=org, pk__in=kpi_ids).order_by("pk").select_for_update(skip_locked=True)
    aggregation = dict(locked.values_list("pk", "aggregate_fn"))
    if not aggregation:
        return 0
    zone = org.tzinfo
    points = Measurement._base_manager.filter(kpi_id__in=aggregation, at__lt=cutoff).order_by("kpi_id", "at")
    raw = list(points.exclude(source=ROLLUP).values_list("pk", "kpi_id", "at", "value"))
    if not raw:
        return 0  # another run rolled these up while this one waited
    days: dict[tuple[int, date], list[tuple]] = defaultdict(list)
    for point in raw:
        days[(point[1], point[2].astimezone(zone).date())].append(point)
    # A point that arrived after its day was rolled up joins the day's rolled-up point.
    earliest = datetime.combine(min(day for _, day in days), datetime.min.time(), tzinfo=zone)
    for point in points.filter(source=ROLLUP, at__gte=earliest).values_list("pk", "kpi_id", "at", "value"):
        key = (point[1], point[2].astimezone(zone).date())
        if key in days:
            days[key].append(point)
    alone, kept, removed, redrawn = [], [], [], set()
    drawn_since = timezone.now() - WINDOW
    for (kpi_id, _), day in days.items():
        if len(day) == 1:  # the day's only point is its own roll-up: only marked as one
            alone.append(day[0][0])
            continue
        day.sort(key=lambda point: point[2])
        fn = AGGREGATIONS.get(aggregation[kpi_id], AGGREGATIONS[LAST]).fn
        kept.append(Measurement(pk=day[-1][0], value=fn([point[3] for point in day]), source=ROLLUP))
        removed.extend(point[0] for point in day[:-1])
        if day[-1][2] >= drawn_since:
            redrawn.add(kpi_id)
    # Naming the days' time range lets PostgreSQL look up the ids in those months' partitions only.
    window = Measurement._base_manager.filter(at__gte=earliest, at__lt=cutoff)
    for start in range(0, len(alone), CHUNK):
        window.filter(pk__in=alone[start : start + CHUNK]).update(source=ROLLUP)
    window.bulk_update(kept, ["value", "source"], batch_size=CHUNK)
    for start in range(0, len(removed), CHUNK):
        window.filter(pk__in=removed[start : start + CHUNK]).delete()  # with their revisions
    # A retention shorter than the sparkline's window changes points the scorecard's kept rows drew (row_cache).
    Kpi.objects.filter(pk__in=redrawn).update(series_version=F("series_version") + 1)
    return len(removed)


def roll_up_due(*, now: datetime | None = None) -> dict[str, int]:
    """The daily sweep: every organization that limits its raw points. Run in the system scope."""
    removed = 0
    orgs = Organization.objects.filter(raw_measurement_days__isnull=False).order_by("pk")
    for org in orgs:
        removed += measurements_roll_up(org=org, now=now)
    return {"organizations": len(orgs), "removed": removed}
