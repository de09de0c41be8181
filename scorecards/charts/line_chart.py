"""The full chart of one KPI: threshold bands, value and time axes, status-change markers, target or target
pace, the series and its latest value, and a one-sentence summary for screen readers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from governance import formats
from scorecards.charts.svg import (
    CHAR_PX,
    check_status,
    clean_series,
    coord,
    downsample,
    nice_ticks,
    tick_labels,
    time_ticks,
    timestamp,
)


@dataclass(frozen=True)
class Band:
    """A threshold band; a None edge extends to the edge of the chart."""

    low: float | None
    high: float | None
    status: str


@dataclass(frozen=True)
class Marker:
    """A status change, drawn as a vertical line."""

    at: datetime
    status: str
    label: str


def _clip_line(line: list[tuple[float, float]], t0: float, t1: float) -> list[tuple[float, float]]:
    """The part of a dated target line inside the series' time range, interpolated at the edges."""

    def at(t: float) -> float:
        for (ta, va), (tb, vb) in zip(line, line[1:], strict=False):
            if ta <= t <= tb:
                return va if tb == ta else va + (vb - va) * (t - ta) / (tb - ta)
        raise ValueError(t)

    lo, hi = max(t0, line[0][0]), min(t1, line[-1][0])
    if lo > hi:
        return []
    inside = [(t, v) for t, v in line if lo < t < hi]
    return [(lo, at(lo)), *inside, (hi, at(hi))]


def _empty_chart(*, title: str, width: int, height: int) -> SafeString:
    return format_html(
        '<svg class="chart chart-empty" viewBox="0 0 {w} {h}" width="100%" preserveAspectRatio="xMinYMin meet" '
        'role="img" aria-label="{t}"><title>{t}</title><desc>No data yet.</desc>'
        '<rect class="chart-empty-frame" x="0.5" y="0.5" width="{w1}" height="{h1}" rx="6"/>'
        '<text class="chart-empty-text" x="{cx}" y="{cy}">No data yet</text></svg>',
        w=width,
        h=height,
        t=title,
        w1=width - 1,
        h1=height - 1,
        cx=coord(width / 2),
        cy=coord(height / 2 + 4),
    )


def kpi_chart(
    *,
    points: Sequence[tuple[datetime, float]],
    target: float | None,
    target_line: Sequence[tuple[datetime, float]] | None,
    bands: Sequence[Band],
    changes: Sequence[Marker],
    unit: str,
    tz: tzinfo,
    title: str,
    width: int = 760,
    height: int = 280,
) -> SafeString:
    """A line chart of one KPI with threshold bands, target, status-change markers and a text summary."""
    # Normalised to plain strings so enum members cannot leak their repr into class names.
    bands = [Band(b.low, b.high, check_status(b.status)) for b in bands]
    changes = [Marker(m.at, check_status(m.status), m.label) for m in changes]
    clean = clean_series(points)
    if not clean:
        return _empty_chart(title=title, width=width, height=height)

    xy = [(timestamp(at), v) for at, v in clean]
    t0, t1 = xy[0][0], xy[-1][0]
    if t0 == t1:
        t0, t1 = t0 - 43200, t1 + 43200  # one point: centre it in its day

    goals = clean_series(target_line or ())
    if len(goals) == 1:
        # A single dated target has no pace to draw; it is a constant target.
        target = goals[0][1] if target is None else target
        goals = []
    goal = goals[-1] if goals else None
    pace = _clip_line([(timestamp(at), v) for at, v in goals], t0, t1) if goals else []

    ticks = _value_ticks([v for _, v in xy], pace, target, bands)
    plot = _Plot.fit(ticks, (t0, t1), last_text=formats.compact(xy[-1][1]), unit=unit, width=width, height=height)
    parts: list[str] = [
        format_html(
            '<svg class="chart" viewBox="0 0 {} {}" width="100%" preserveAspectRatio="xMinYMin meet" '
            'role="img" aria-label="{}"><title>{}</title><desc>{}</desc>',
            width,
            height,
            title,
            title,
            _summary(clean, target=target, goal=goal, unit=unit, tz=tz),
        ),
        *plot.bands(bands),
        *plot.y_axis(ticks, unit),
        *plot.x_axis(tz),
        *plot.markers(changes),
        *plot.target(target, unit),
        *plot.pace(goal, pace, unit, tz),
        *plot.series(xy, last_at=clean[-1][0], unit=unit, tz=tz),
        "</svg>",
    ]
    # Every caller-supplied string above went through format_html/escape; the rest is numbers and classes.
    return mark_safe("".join(parts))


def _value_ticks(
    values: list[float], pace: list[tuple[float, float]], target: float | None, bands: Sequence[Band]
) -> list[float]:
    """The y axis's ticks: everything drawn, padded 8%, widened to nice ticks."""
    extent = [*values, *(v for _, v in pace)]
    if target is not None:
        extent.append(target)
    for band in bands:
        extent.extend(e for e in (band.low, band.high) if e is not None and math.isfinite(e))
    lo, hi = min(extent), max(extent)
    padding = (hi - lo) * 0.08
    lo_padded, hi_padded = lo - padding, hi + padding
    # A KPI that never crosses zero should not grow an axis on the other side of it.
    if lo >= 0 > lo_padded:
        lo_padded = 0.0
    if hi <= 0 < hi_padded:
        hi_padded = 0.0
    return nice_ticks(lo_padded, hi_padded)


@dataclass(frozen=True)
class _Plot:
    """The plot area of a KPI chart and its scales; each method draws one layer, bottom to top."""

    width: int
    left: float
    top: float
    plot_w: float
    plot_h: float
    t0: float
    t1: float
    y_min: float
    y_max: float
    last_text: str

    @classmethod
    def fit(
        cls, ticks: list[float], span: tuple[float, float], *, last_text: str, unit: str, width: int, height: int
    ) -> _Plot:
        # Margins sized from the labels they hold, so nothing is clipped.
        left = max(28.0, max(len(s) for s in tick_labels(ticks)) * CHAR_PX + 12)
        right = len(last_text) * CHAR_PX + 14
        top = 26.0 if unit else 14.0
        bottom = 26.0
        return cls(width, left, top, width - left - right, height - top - bottom, *span, ticks[0], ticks[-1], last_text)

    def x_of(self, t: float) -> float:
        return self.left + (t - self.t0) / (self.t1 - self.t0) * self.plot_w

    def y_of(self, v: float) -> float:
        return self.top + (self.y_max - v) / (self.y_max - self.y_min) * self.plot_h

    @property
    def bottom(self) -> float:
        return self.top + self.plot_h

    @property
    def x_edges(self) -> tuple[str, str]:
        return coord(self.left), coord(self.left + self.plot_w)

    def bands(self, bands: Sequence[Band]) -> list[str]:
        if not bands:
            return []
        x_left, _ = self.x_edges
        parts = ['<g class="bands">']
        for band in bands:
            edges = [e if e is not None and math.isfinite(e) else None for e in (band.low, band.high)]
            b_lo = self.y_min if edges[0] is None else max(self.y_min, min(edges[0], self.y_max))
            b_hi = self.y_max if edges[1] is None else max(self.y_min, min(edges[1], self.y_max))
            b_lo, b_hi = min(b_lo, b_hi), max(b_lo, b_hi)
            y_top, y_bottom = self.y_of(b_hi), self.y_of(b_lo)
            parts.append(
                f'<rect class="band band-{band.status}" x="{x_left}" y="{coord(y_top)}" '
                f'width="{coord(self.plot_w)}" height="{coord(y_bottom - y_top)}"/>'
            )
        parts.append("</g>")
        return parts

    def y_axis(self, ticks: list[float], unit: str) -> list[str]:
        """The grid lines, then the value labels (and the unit above them)."""
        x_left, x_right = self.x_edges
        parts = ['<g class="grid">']
        for tick in ticks:
            y = coord(self.y_of(tick))
            parts.append(f'<line x1="{x_left}" y1="{y}" x2="{x_right}" y2="{y}"/>')
        parts.append("</g>")
        parts.append('<g class="axis axis-y">')
        if unit:
            parts.append(format_html('<text class="axis-title" x="2" y="12">{}</text>', unit))
        for tick, text in zip(ticks, tick_labels(ticks), strict=True):
            parts.append(f'<text x="{coord(self.left - 6)}" y="{coord(self.y_of(tick) + 4)}">{escape(text)}</text>')
        parts.append("</g>")
        return parts

    def x_axis(self, tz: tzinfo) -> list[str]:
        x_left, x_right = self.x_edges
        bottom = self.bottom
        parts = [
            f'<g class="axis axis-x"><line class="axis-line" x1="{x_left}" y1="{coord(bottom)}" '
            f'x2="{x_right}" y2="{coord(bottom)}"/>'
        ]
        for t, text in time_ticks(self.t0, self.t1, tz, self.plot_w):
            x = self.x_of(t)
            half = len(text) * CHAR_PX / 2
            label_x = min(max(x, half + 2), self.width - half - 2)
            parts.append(
                f'<line x1="{coord(x)}" y1="{coord(bottom)}" x2="{coord(x)}" y2="{coord(bottom + 4)}"/>'
                f'<text x="{coord(label_x)}" y="{coord(bottom + 17)}">{escape(text)}</text>'
            )
        parts.append("</g>")
        return parts

    def markers(self, changes: Sequence[Marker]) -> list[str]:
        """A status change as a line across the plot with a dot on top; a wider invisible line takes the hover."""
        parts = []
        top, bottom = coord(self.top), coord(self.bottom)
        for marker in changes:
            t = timestamp(marker.at)
            if not self.t0 <= t <= self.t1:
                continue
            x = coord(self.x_of(t))
            parts.append(
                format_html(
                    '<g class="marker marker-{}"><title>{}</title>'
                    '<line x1="{}" y1="{}" x2="{}" y2="{}"/><line class="hit" x1="{}" y1="{}" x2="{}" y2="{}"/>'
                    '<circle cx="{}" cy="{}" r="3.5"/></g>',
                    marker.status,
                    marker.label,
                    x,
                    top,
                    x,
                    bottom,
                    x,
                    top,
                    x,
                    bottom,
                    x,
                    top,
                )
            )
        return parts

    def target(self, target: float | None, unit: str) -> list[str]:
        if target is None:
            return []
        x_left, x_right = self.x_edges
        y = coord(self.y_of(target))
        text = formats.with_unit(formats.compact(target), unit)
        return [
            format_html(
                '<g class="target"><title>Target {}</title><line x1="{}" y1="{}" x2="{}" y2="{}"/></g>'
                '<text class="target-label" x="{}" y="{}">Target {}</text>',
                text,
                x_left,
                y,
                x_right,
                y,
                coord(self.left + 4),
                coord(self.y_of(target) - 5),
                formats.compact(target),
            )
        ]

    def pace(
        self, goal: tuple[datetime, float] | None, pace: list[tuple[float, float]], unit: str, tz: tzinfo
    ) -> list[str]:
        """A dated target's pace: the line from the baseline to the target, labelled at its end."""
        if not goal or len(pace) < 2:
            return []
        goal_text, by = formats.compact(goal[1]), formats.day(goal[0], tz)
        coords = " ".join(f"{coord(self.x_of(t))},{coord(self.y_of(v))}" for t, v in pace)
        end_x, end_y = self.x_of(pace[-1][0]), self.y_of(pace[-1][1])
        return [
            format_html(
                '<g class="target target-pace"><title>Target pace: {} by {}</title><polyline points="{}"/></g>'
                '<text class="target-label target-label-end" x="{}" y="{}">Target {} by {}</text>',
                formats.with_unit(goal_text, unit),
                by,
                coords,
                coord(end_x - 4),
                coord(end_y - 6),
                goal_text,
                by,
            )
        ]

    def series(self, xy: list[tuple[float, float]], *, last_at: datetime, unit: str, tz: tzinfo) -> list[str]:
        """The values' line (down-sampled to about a point per pixel) and the latest value, labelled."""
        parts = []
        series = downsample(xy, max(4, int(self.plot_w)))
        coords = " ".join(f"{coord(self.x_of(t))},{coord(self.y_of(v))}" for t, v in series)
        if len(series) > 1:
            parts.append(f'<polyline class="series" points="{coords}"/>')
        last_v = xy[-1][1]
        lx, ly = self.x_of(xy[-1][0]), self.y_of(last_v)
        parts.append(
            format_html(
                '<g class="last"><title>Latest: {} on {}</title><circle class="last-dot" cx="{}" cy="{}" r="3.5"/>'
                '<text class="last-label" x="{}" y="{}">{}</text></g>',
                formats.with_unit(formats.compact(last_v), unit),
                formats.day(last_at, tz),
                coord(lx),
                coord(ly),
                coord(lx + 7),
                coord(ly + 4),
                self.last_text,
            )
        )
        return parts


def _summary(
    points: list[tuple[datetime, float]],
    *,
    target: float | None,
    goal: tuple[datetime, float] | None,
    unit: str,
    tz: tzinfo,
) -> str:
    """The chart as one sentence for screen readers."""
    first_at, last_at = points[0][0], points[-1][0]
    values = [v for _, v in points]
    n = len(points)
    if n == 1:
        parts = [f"Series of 1 point on {formats.day(first_at, tz)}"]
    else:
        parts = [f"Series of {n:,} points from {formats.day(first_at, tz)} to {formats.day(last_at, tz)}"]
    parts.append(f"latest {formats.with_unit(formats.compact(values[-1]), unit)} on {formats.day(last_at, tz)}")
    if target is not None:
        parts.append(f"target {formats.with_unit(formats.compact(target), unit)}")
    if goal:
        parts.append(f"target {formats.with_unit(formats.compact(goal[1]), unit)} by {formats.day(goal[0], tz)}")
    low, high = formats.compact(min(values)), formats.compact(max(values))
    parts.append(f"min {formats.with_unit(low, unit)}, max {formats.with_unit(high, unit)}")
    return "; ".join(parts) + "."
