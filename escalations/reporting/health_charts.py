"""The health page's charts: weekly series as server-rendered SVG, styled by class (static/css/charts.css for the
grid, axes, line and dots they share with the KPI chart; static/css/health.css for the bars).

Every chart has the same frame: one slot per calendar week on the x axis, labelled by the week's Monday, so the
four charts line up week for week. The y scale comes from scorecards.charts.nice_ticks (lines) or whole-number
steps (counts). Each chart says itself in <title>/<desc>; the page also prints every number in a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from escalations.reporting.health import Metric, Series, Week
from scorecards.charts.svg import coord, nice_ticks

WIDTH, HEIGHT = 480, 220  # one column of the page's two at 1280px: drawn at about 1:1
_CHAR_PX = 6.6  # average advance of an 11px UI font, as in scorecards.charts
PALETTE = 6  # .bar-0 ... .bar-5 in health.css


def _tick(v: float) -> str:
    return f"{v:,.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v):,}"


def count_ticks(top: float) -> list[int]:
    """0 up to at least `top` in 1 to 4 whole steps of 1, 2 or 5 x 10^n (counts have no halves)."""
    step = next(s for e in range(16) for s in (10**e, 2 * 10**e, 5 * 10**e) if math.ceil(top / s) <= 4)
    return list(range(0, step * max(1, math.ceil(top / step)) + 1, step))


class _Frame:
    """The plot area, the horizontal grid with its y labels, and the week labels under it."""

    def __init__(self, weeks: Sequence[Week], ticks: Sequence[float], unit: str):
        self.weeks, self.ticks, self.unit = weeks, ticks, unit
        self.labels = [_tick(t) for t in ticks]
        self.left = max(len(s) for s in self.labels) * _CHAR_PX + 12
        self.top = 24.0 if unit else 12.0
        self.bottom, self.right = 26.0, 10.0
        self.plot_w = WIDTH - self.left - self.right
        self.plot_h = HEIGHT - self.top - self.bottom
        self.band = self.plot_w / len(weeks)

    def x_of(self, i: int) -> float:
        """The centre of week i's slot."""
        return self.left + (i + 0.5) * self.band

    def y_of(self, v: float) -> float:
        lo, hi = self.ticks[0], self.ticks[-1]
        return self.top + (hi - v) / (hi - lo) * self.plot_h

    def open(self, title: str, desc: str, css: str) -> list[str]:
        parts = [
            format_html(
                '<svg class="chart {}" viewBox="0 0 {} {}" width="100%" preserveAspectRatio="xMinYMin meet" '
                'role="img" aria-label="{}"><title>{}</title><desc>{}</desc>',
                css,
                WIDTH,
                HEIGHT,
                title,
                title,
                desc,
            ),
            '<g class="grid">',
        ]
        x1, x2 = coord(self.left), coord(self.left + self.plot_w)
        parts += [
            f'<line x1="{x1}" y1="{coord(self.y_of(t))}" x2="{x2}" y2="{coord(self.y_of(t))}"/>' for t in self.ticks
        ]
        parts.append('</g><g class="axis axis-y">')
        if self.unit:
            parts.append(format_html('<text class="axis-title" x="2" y="12">{}</text>', self.unit))
        for t, text in zip(self.ticks, self.labels, strict=True):
            parts.append(
                format_html('<text x="{}" y="{}">{}</text>', coord(self.left - 6), coord(self.y_of(t) + 4), text)
            )
        parts.append("</g>")
        return parts

    def close(self) -> list[str]:
        """Week labels: as many as fit, always including the newest week."""
        n = len(self.weeks)
        # From the chart's width rather than the plot's, so that every chart labels the same weeks.
        every = max(1, math.ceil(n / max(1, int((WIDTH - 60) // (6 * _CHAR_PX + 10)))))
        base = coord(self.top + self.plot_h)
        parts = [
            f'<g class="axis axis-x"><line class="axis-line" x1="{coord(self.left)}" y1="{base}" '
            f'x2="{coord(self.left + self.plot_w)}" y2="{base}"/>'
        ]
        for i, week in enumerate(self.weeks):
            if (n - 1 - i) % every:
                continue
            half = len(week.label) * _CHAR_PX / 2
            x = min(max(self.x_of(i), half + 2), WIDTH - half - 2)
            parts.append(
                format_html('<text x="{}" y="{}">{}</text>', coord(x), coord(self.top + self.plot_h + 17), week.label)
            )
        parts.append("</g></svg>")
        return parts


def _desc(weeks: Sequence[Week], cells: Sequence[str]) -> str:
    return (
        "; ".join(
            f"week of {w.label}{' so far' if w.in_progress else ''}: {c}" for w, c in zip(weeks, cells, strict=True)
        )
        + "."
    )


def line_chart(metric: Metric, weeks: Sequence[Week]) -> SafeString:
    """A point per week joined by a line; a week with nothing to measure breaks the line."""
    values = [v for v in metric.values if v is not None]
    ticks = nice_ticks(0.0, max(values) if values and max(values) > 0 else 1.0, min_count=3, max_count=5)
    frame = _Frame(weeks, ticks, metric.unit)
    parts = frame.open(metric.title, _desc(weeks, metric.cells), "chart-weekly")
    runs: list[list[tuple[float, float]]] = [[]]
    for i, v in enumerate(metric.values):
        if v is None:
            runs.append([])
        else:
            runs[-1].append((frame.x_of(i), frame.y_of(v)))
    for run in runs:
        if len(run) > 1:
            parts.append(f'<polyline class="series" points="{" ".join(f"{coord(x)},{coord(y)}" for x, y in run)}"/>')
    parts.append('<g class="points">')
    for i, (week, v) in enumerate(zip(weeks, metric.values, strict=True)):
        if v is None:
            continue
        parts.append(
            format_html(
                '<circle class="point{}" cx="{}" cy="{}" r="3.5"><title>Week of {}{}: {}</title></circle>',
                " point-partial" if week.in_progress else "",
                coord(frame.x_of(i)),
                coord(frame.y_of(v)),
                week.label,
                " so far" if week.in_progress else "",
                metric.cells[i],
            )
        )
    parts.append("</g>")
    # Labels and titles went through format_html; the rest is numbers and class names.
    return mark_safe("".join(parts + frame.close()))


def bar_chart(metric: Metric, weeks: Sequence[Week]) -> SafeString:
    """Counts per week as bars, stacked by the metric's breakdown when it has one; the week in progress is paler."""
    series = metric.breakdown or [Series(metric.title, [v or 0 for v in metric.values])]
    totals = [sum(s.values[i] for s in series) for i in range(len(weeks))]
    frame = _Frame(weeks, count_ticks(max(totals, default=0)), metric.unit)
    parts = frame.open(metric.title, _desc(weeks, metric.cells), "chart-weekly")
    bar = max(2.0, frame.band * 0.64)
    parts.append('<g class="bars">')
    for i, week in enumerate(weeks):
        base = 0.0
        for j, s in enumerate(series):
            v = s.values[i]
            if not v:
                continue
            y_top, y_bottom = frame.y_of(base + v), frame.y_of(base)
            base += v
            parts.append(
                format_html(
                    '<rect class="bar bar-{}{}" x="{}" y="{}" width="{}" height="{}">'
                    "<title>{}, week of {}{}: {}</title></rect>",
                    j % PALETTE,
                    " bar-partial" if week.in_progress else "",
                    coord(frame.x_of(i) - bar / 2),
                    coord(y_top),
                    coord(bar),
                    coord(y_bottom - y_top),
                    s.name,
                    week.label,
                    " so far" if week.in_progress else "",
                    int(v),
                )
            )
    parts.append("</g>")
    return mark_safe("".join(parts + frame.close()))


def chart(metric: Metric, weeks: Sequence[Week]) -> SafeString:
    return line_chart(metric, weeks) if metric.chart == "line" else bar_chart(metric, weeks)
