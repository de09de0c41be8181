"""The sparkline: a KPI's recent values as a tiny line, drawn on every scorecard row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from scorecards.charts.svg import check_status, clean_series, coord, downsample, timestamp

WINDOW = timedelta(days=30)  # the span of the scorecard's sparklines


def sparkline(
    points: Sequence[tuple[datetime, float]],
    *,
    status: str,
    width: int = 120,
    height: int = 28,
    label: str,
) -> SafeString:
    """A tiny line of the series with its last point as a dot; a dash when there is nothing to draw."""
    status = check_status(status)
    head = format_html(
        '<svg class="spark spark-{}" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">'
        "<title>{}</title>",
        status,
        width,
        height,
        width,
        height,
        label,
        label,
    )
    clean = clean_series(points)
    mid = height / 2
    if len(clean) < 2:
        body = f'<line x1="{coord(width * 0.3)}" y1="{coord(mid)}" x2="{coord(width * 0.7)}" y2="{coord(mid)}"/>'
        return mark_safe(f"{head}{body}</svg>")  # numbers only; label escaped above

    pad = 2.5  # room for the dot's radius and the stroke
    xy = [(timestamp(at), v) for at, v in clean]
    xy = downsample(xy, max(4, width))
    t0, t1 = xy[0][0], xy[-1][0]
    lo = min(v for _, v in xy)
    hi = max(v for _, v in xy)

    def x_of(i: int, t: float) -> float:
        if t1 == t0:
            return pad + i / (len(xy) - 1) * (width - 2 * pad)
        return pad + (t - t0) / (t1 - t0) * (width - 2 * pad)

    def y_of(v: float) -> float:
        if hi == lo:
            return mid
        return pad + (hi - v) / (hi - lo) * (height - 2 * pad)

    coords = [(coord(x_of(i, t)), coord(y_of(v))) for i, (t, v) in enumerate(xy)]
    polyline = " ".join(f"{x},{y}" for x, y in coords)
    last_x, last_y = coords[-1]
    body = f'<polyline points="{polyline}"/><circle cx="{last_x}" cy="{last_y}" r="2"/>'
    return mark_safe(f"{head}{body}</svg>")  # numbers only; label escaped above
