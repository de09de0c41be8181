"""The evidence of a suggested dependency as a picture: both KPIs' daily values on one time axis, the upstream one
moved forward by the measured lag, so what the coefficient says can be seen. Pure: plain values in, SVG out.

The two KPIs have different units and scales, so each is drawn across the full height of its own range (0 % at its
lowest, 100 % at its highest day); the picture is about timing and shape, the tables carry the values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from scorecards.charts.svg import coord, time_ticks, timestamp

PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44.0, 12.0, 12.0, 28.0


def _scaled(points: Sequence[tuple[datetime, float]]) -> list[tuple[float, float]]:
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return [(timestamp(at), (v - lo) / span) for at, v in points]


def overlay_svg(
    *,
    upstream: Sequence[tuple[datetime, float]],
    downstream: Sequence[tuple[datetime, float]],
    lag: timedelta,
    tz: tzinfo,
    title: str,
    width: int = 760,
    height: int = 260,
) -> SafeString:
    shifted = [(at + lag, v) for at, v in upstream]
    series = [s for s in (_scaled(shifted) if shifted else [], _scaled(downstream) if downstream else []) if s]
    head = format_html(
        '<svg class="chart" viewBox="0 0 {} {}" width="100%" preserveAspectRatio="xMinYMin meet" role="img" '
        'aria-label="{}"><title>{}</title>',
        width,
        height,
        title,
        title,
    )
    if not series:
        return mark_safe(f'{head}<text x="{coord(width / 2)}" y="{coord(height / 2)}">No data</text></svg>')
    t0 = min(s[0][0] for s in series)
    t1 = max(s[-1][0] for s in series)
    t1 = t1 if t1 > t0 else t0 + 86400
    plot_w, plot_h = width - PAD_LEFT - PAD_RIGHT, height - PAD_TOP - PAD_BOTTOM

    def x(t: float) -> str:
        return coord(PAD_LEFT + (t - t0) / (t1 - t0) * plot_w)

    def y(v: float) -> str:
        return coord(PAD_TOP + (1 - v) * plot_h)

    parts = [head, '<g class="grid">']
    for v, label in ((0.0, "0%"), (0.5, "50%"), (1.0, "100%")):
        parts.append(f'<line x1="{coord(PAD_LEFT)}" x2="{coord(width - PAD_RIGHT)}" y1="{y(v)}" y2="{y(v)}"/>')
        parts.append(f'<text class="axis-y" x="{coord(PAD_LEFT - 6)}" y="{coord(float(y(v)) + 4)}">{label}</text>')
    parts.append('</g><g class="axis-x">')
    for t, label in time_ticks(t0, t1, tz, plot_w):
        parts.append(format_html('<text x="{}" y="{}">{}</text>', x(t), coord(height - 8), label))
    parts.append("</g>")
    for css, points in zip(("series series-lead", "series"), (_scaled(shifted), _scaled(downstream)), strict=True):
        if points:
            line = " ".join(f"{x(t)},{y(v)}" for t, v in points)
            parts.append(f'<polyline class="{css}" points="{line}"/>')
    parts.append("</svg>")
    # Caller strings went through format_html; the rest is numbers and fixed class names.
    return mark_safe("".join(parts))


def day_points(levels: Sequence[float], start, tz: tzinfo) -> list[tuple[datetime, float]]:
    """A row of daily levels (NaN on days without a value) as points at each local noon."""
    return [
        (datetime.combine(start + timedelta(days=i), time(12), tzinfo=tz).astimezone(UTC), float(v))
        for i, v in enumerate(levels)
        if v == v  # NaN is the only value unequal to itself
    ]
