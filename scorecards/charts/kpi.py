"""A KPI's chart: 90 days of the value it is judged by (the aggregate, e.g. a 7-day sum) against its threshold
bands and target, with its status changes marked.

The KPI page draws one and lets it read its own data; pages that draw many (the executive review, the steering
pack) read every KPI's points and changes in two queries and pass them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta, tzinfo

from django.utils import timezone
from django.utils.safestring import SafeString

from scorecards.charts import line_chart
from scorecards.evaluation import evaluator
from scorecards.evaluation.aggregate import rolling
from scorecards.evaluation.sweep import rule_for
from scorecards.evaluation.thresholds import RANGE, ThresholdError, parse_thresholds
from scorecards.models import Kpi, StatusChange

DAYS = timedelta(days=90)


def data_since(kpi: Kpi, now: datetime) -> datetime:
    """The oldest raw point the chart needs: 90 days back, and the aggregate's window before that."""
    return now - DAYS - (kpi.aggregate_window or timedelta(0))


def bands(kpi: Kpi, tz: tzinfo, now: datetime) -> list[line_chart.Band]:
    try:
        spec = parse_thresholds(kpi.direction, kpi.thresholds, has_target=kpi.target_value is not None)
        # Relative thresholds as the evaluator resolves them now (against the pace of a dated target).
        t = spec.resolve(evaluator.pace(rule_for(kpi, tz), now))
    except ThresholdError:
        return []
    if kpi.direction == RANGE:
        (wl, wh), (cl, ch) = t.warning, t.critical
        return [
            line_chart.Band(None, cl, "off_track"),
            line_chart.Band(cl, wl, "at_risk"),
            line_chart.Band(wl, wh, "on_track"),
            line_chart.Band(wh, ch, "at_risk"),
            line_chart.Band(ch, None, "off_track"),
        ]
    if kpi.direction == "increase":
        return [
            line_chart.Band(None, t.critical, "off_track"),
            line_chart.Band(t.critical, t.warning, "at_risk"),
            line_chart.Band(t.warning, None, "on_track"),
        ]
    return [
        line_chart.Band(None, t.warning, "on_track"),
        line_chart.Band(t.warning, t.critical, "at_risk"),
        line_chart.Band(t.critical, None, "off_track"),
    ]


def kpi_chart(
    kpi: Kpi,
    tz: tzinfo,
    *,
    raw: list[tuple[datetime, float]] | None = None,
    changes: Iterable[StatusChange] | None = None,
    now: datetime | None = None,
    width: int = 760,
    height: int = 280,
) -> SafeString:
    """`raw`: the KPI's points since data_since(), oldest first; `changes`: its status changes of the last 90 days.
    Either is read here when not given."""
    now = now or timezone.now()
    since = now - DAYS
    if raw is None:
        raw = list(kpi.measurements.filter(at__gt=data_since(kpi, now)).order_by("at").values_list("at", "value"))
    if changes is None:
        changes = kpi.status_changes.filter(changed_at__gte=since)
    points = [(at, v) for at, v in rolling(raw, kpi.aggregate_fn, kpi.aggregate_window) if at >= since]
    target_line = None
    if kpi.target_by and kpi.baseline_at is not None and kpi.baseline_value is not None:
        target_line = [
            (datetime.combine(kpi.baseline_at, time(), tz), kpi.baseline_value),
            (datetime.combine(kpi.target_by, time(), tz), kpi.target_value),
        ]
    markers = [
        line_chart.Marker(c.changed_at, c.new, f"{c.get_old_display()} → {c.get_new_display()}: {c.reason}")
        for c in changes
    ]
    return line_chart.kpi_chart(
        points=points,
        target=None if target_line else kpi.target_value,
        target_line=target_line,
        bands=bands(kpi, tz, now),
        changes=markers,
        unit=kpi.unit,
        tz=tz,
        title=f"{kpi.name}, last 90 days",
        width=width,
        height=height,
    )
