from __future__ import annotations

import math
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html

from governance import formats
from governance.durations import format_duration
from scorecards.connectors.registry import connector_kind
from scorecards.ingestion.pulls import run_lost_after
from scorecards.models import DataSourceRun, Status
from scorecards.selectors import key_result_actual, key_result_progress

register = template.Library()


@register.filter
def kpi_value(value: float | None, unit: str = "") -> str:
    return formats.value(value, unit)


@register.filter
def kpi_value_short(value: float | None, unit: str = "") -> str:
    """A value where a table keeps one line per KPI: 1.1M EUR (the exact one goes in a tooltip)."""
    return formats.value(value, unit, short=True)


@register.filter
def duration(value: timedelta | None) -> str:
    return format_duration(value) if value is not None else "—"


@register.filter
def age(value: timedelta | None) -> str:
    """A data point's age as people say it: 40 min, 5 h, 3 d."""
    if value is None:
        return "never"
    minutes = int(value.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} d"


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


@register.filter
def bar_width(value: float | None) -> int:
    """Progress as a 0-100 step of 5 for a CSS class (no inline styles under the CSP)."""
    if value is None or math.isnan(value):
        return 0
    return int(min(max(value, 0), 1) * 20) * 5


@register.filter
def progress_label(value: float | None) -> str:
    """A negative share reads as nonsense ("-581%"): below the start is what it means."""
    return "below the starting value" if value is not None and value < 0 else percent(value)


@register.filter
def kr_progress(key_result) -> float | None:
    return key_result_progress(key_result)


@register.filter
def kr_actual(key_result) -> float | None:
    return key_result_actual(key_result)


@register.filter
def status_label(value: str) -> str:
    return Status(value).label if value in Status.values else value


@register.filter
def connector_label(kind: str) -> str:
    """A data source's kind as its connector names it (scorecards.connectors.registry)."""
    connector = connector_kind(kind)
    return connector.label if connector else kind


@register.simple_tag
def status_chip(kpi) -> str:
    """The status chip with its pending qualifier ("On track · pending → At risk"); a tag, not an include,
    because the scorecard draws one per row."""
    chip = format_html('<span class="status status-{}">{}</span>', kpi.status, kpi.get_status_display())
    if not kpi.pending_status:
        return chip
    return format_html(
        '{} <span class="pending" title="The status changes once this has held {}">'
        '<span class="pending-word">pending </span>→ {}</span>',
        chip,
        duration(kpi.pending_wait),
        kpi.get_pending_status_display(),
    )


FRESHNESS_LABELS = {"fresh": "Fresh", "late": "Late", "stale": "Stale", "none": "No data"}


def freshness_state(newest: datetime | None, cadence: timedelta, stale_after: timedelta, now: datetime) -> str:
    """fresh while the newest point is at most one cadence old, late after that, stale beyond stale_after."""
    if newest is None:
        return "none"
    if now - newest <= cadence:
        return "fresh"
    return "late" if now - newest <= stale_after else "stale"


@register.simple_tag
def freshness(kpi) -> str:
    """The age of the KPI's newest data point against its cadence ("3 h ago · every 1d") in the colour of its
    state; the scorecard, the KPI page and the data source pages all draw it with this tag. Tables put the
    cadence on a line of its own (CSS), so the parts are spans."""
    now = timezone.now()
    state = freshness_state(kpi.last_measured_at, kpi.cadence, kpi.stale_after, now)
    every = duration(kpi.cadence)
    if state == "none":
        text, title = "no data", f"No data yet; expected every {every}"
    else:
        text = f"{age(now - kpi.last_measured_at)} ago"
        title = f"Newest data point {text}; expected every {every}, stale after {duration(kpi.stale_after)}"
    return format_html(
        '<span class="freshness freshness-{}" title="{}"><span class="visually-hidden">{}: </span>'
        '<span class="freshness-age">{}</span><span class="freshness-sep"> · </span>'
        '<span class="freshness-every">every {}</span></span>',
        state,
        title,
        FRESHNESS_LABELS[state],
        text,
        every,
    )


@register.filter
def ago(value: datetime | None) -> str:
    """A past time as its age: "3 h ago"."""
    return "never" if value is None else f"{age(timezone.now() - value)} ago"


@register.filter
def until(value: datetime | None) -> str:
    """A planned time as the wait for it: "in 40 min", or "at the next sweep" when it is due (or unset)."""
    if value is None or value <= timezone.now():
        return "at the next sweep"
    return f"in {age(value - timezone.now())}"


@register.filter
def run_state(run: DataSourceRun | None) -> str:
    """A data source run as the pages show it: running (or queued), lost (no worker finished it), failed, ok."""
    if run is None:
        return ""
    if run.finished_at is None:
        return "running" if run.started_at >= timezone.now() - run_lost_after() else "lost"
    return "failed" if run.error else "ok"


@register.filter
def took(run: DataSourceRun) -> str:
    if run.finished_at is None:
        return "—"
    seconds = (run.finished_at - run.started_at).total_seconds()
    return f"{seconds:.1f} s" if seconds < 60 else age(run.finished_at - run.started_at)
