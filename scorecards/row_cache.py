"""The scorecard's rows, each rendered once per content and kept in the cache (docs/operations.md, "Performance").

A row's key is a digest of everything the row shows, read by the page's own query on every request: the KPI's
status, values and settings, its team's and owner's names, its workstream chip, its data age as the row words it,
and `Kpi.series_version`, which every measurement write moves under the KPI lock it already takes. An evaluation,
a configuration change, an owner transfer or new data therefore changes the key, in whichever process or
transaction made it: nothing has to remember to invalidate anything, and a page never shows a row older than the
database it just read. The version is a column of the KPI's row, not a counter in Redis, so it commits and rolls
back with the data, and the local memory cache of a single process is as correct as a shared Redis.

Visibility is applied before any key is made (the page's query lists only what the viewer may see): the cache
holds one KPI's row, the same for everyone who may see it, never a person's list.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import datetime

from django.core.cache import cache
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.safestring import SafeString

from governance.models import Organization
from scorecards import selectors
from scorecards.charts.sparkline import WINDOW, sparkline
from scorecards.models import Direction, Kpi
from scorecards.templatetags.kpis import age, freshness_state

LONGEST = 24 * 3600  # seconds a row stays cached at most, to keep the cache tidy
# What a row shows, read for every row of every page; whatever else the row template reads must be added here.
FIELDS = (
    "pk",
    "key",
    "name",
    "unit",
    "direction",
    "target_value",
    "target_by",
    "cadence",
    "stale_after",
    "pending_for",
    "keep_for",
    "status",
    "pending_status",
    "last_value",
    "last_measured_at",
    "series_version",
    "team__name",
    "owner__user__name",
    "open_workstream_id",
    "workstream_state",
)

CLOCK_FIELDS = tuple(FIELDS.index(name) for name in ("last_measured_at", "cadence", "stale_after"))


def scorecard_rows(*, org: Organization, kpis: QuerySet[Kpi], now: datetime) -> list[SafeString]:
    """The rendered rows of `kpis` (already filtered to what the viewer may see, in the page's order)."""
    facts = _facts(kpis)
    keys = {row[0]: _key(org, row, now) for row in facts}
    found = cache.get_many(keys.values())
    missing = [pk for pk, key in keys.items() if key not in found]
    if missing:
        kept: dict[int, dict[str, SafeString]] = defaultdict(dict)  # by how long they may be kept
        for pk, (html, key, seconds) in _render(org, missing, now).items():
            found[keys[pk]] = html
            kept[seconds][key] = html
        for seconds, rows in kept.items():
            if seconds > 0:
                cache.set_many(rows, seconds)
    return [found[keys[row[0]]] for row in facts]


def _key(org: Organization, row: tuple, now: datetime) -> str:
    # The data age is the row's only text that moves with the clock: its words ("40 min ago", "late") are the key.
    measured, cadence, stale_after = (row[i] for i in CLOCK_FIELDS)
    clock = (freshness_state(measured, cadence, stale_after, now), measured and age(now - measured))
    context = (org.pk, org.slug, translation.get_language(), timezone.get_current_timezone_name())
    digest = hashlib.blake2b(repr((row, clock, context)).encode(), digest_size=16).hexdigest()
    return f"scorecard-row:{org.pk}:{row[0]}:{digest}"


def _render(org: Organization, ids: list[int], now: datetime) -> dict[int, tuple[SafeString, str, int]]:
    """Each row's HTML, its key, and how many seconds it may be kept: until its oldest point leaves the sparkline's
    window (it stays correct until then), never while a point dated ahead of now is still to come into it.

    The KPIs are read again here, perhaps after a change the page's own read missed: each row is kept under the key
    of what it was drawn from, never under the page's older key, which the KPI may come back to."""
    kpis = Kpi.objects.for_org(org).filter(pk__in=ids)
    facts = {row[0]: row for row in _facts(kpis)}
    series = selectors.fetch_series(ids, now - WINDOW, now)
    rendered = {}
    for kpi in selectors.with_workstream_state(kpis.select_related("team", "owner__user")):
        points = series.get(kpi.pk, [])
        trend = selectors.trend(points)
        row = {
            "kpi": kpi,
            "spark": sparkline(points, status=kpi.status, label=f"{kpi.name}, last 30 days"),
            "trend": trend,
            # Whether the move is good news depends on the direction: falling costs are green.
            "trend_good": trend != "flat" and (trend == "up") == (kpi.direction == Direction.INCREASE),
            "workstream": selectors.WORKSTREAM_STATES.get(kpi.workstream_state, ""),
        }
        html = render_to_string("scorecards/scorecard.html#row", {"row": row, "org": org})
        if kpi.last_measured_at and kpi.last_measured_at > now:
            seconds = 0  # a future point joins the series when its time comes, which moves no version
        elif points:
            # Whole minutes, so that rows share a few expiries and go to the cache in a few writes.
            seconds = min(int((points[0][0] + WINDOW - now).total_seconds()) // 60 * 60, LONGEST)
        else:
            seconds = LONGEST
        rendered[kpi.pk] = (html, _key(org, facts[kpi.pk], now), seconds)
    return rendered


def _facts(kpis: QuerySet[Kpi]) -> list[tuple]:
    """FIELDS of each KPI, read the same way for the page's keys and for a rendered row's, so that they match."""
    return selectors.read_rows(selectors.with_workstream_state(kpis).values_list(*FIELDS))
