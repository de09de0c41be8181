"""Server-rendered SVG charts for KPIs: pure functions, plain values in, escaped SVG markup out.

The CSP forbids inline styles, so every element is styled by class from static/css/charts.css.
The markup is meant to be inlined in HTML, hence no xmlns attribute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from governance import formats

__all__ = ["Band", "Marker", "kpi_chart", "nice_ticks", "sparkline"]

STATUSES = frozenset({"on_track", "at_risk", "off_track", "stale", "no_data"})

# Average glyph advance of 11px UI fonts; used to reserve room for labels without measuring text.
_CHAR_PX = 6.6
_NICE_MANTISSAS = (1.0, 2.0, 2.5, 5.0)


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


# --------------------------------------------------------------------------------------------------
# Numbers


def coord(v: float) -> str:
    """A coordinate rounded to one decimal, without a trailing .0 (bytes add up over 500 sparklines)."""
    r = round(v, 1)
    return str(int(r)) if r == int(r) else f"{r:.1f}"


def _decimals(step: float) -> int:
    """How many decimals tell ticks `step` apart: 250 -> 0, 2.5 -> 1, 0.25 -> 2."""
    for d in range(7):
        scaled = step * 10**d
        if abs(scaled - round(scaled)) < 1e-6 * max(1.0, scaled):
            return d
    return 6


def _tick_labels(ticks: Sequence[float]) -> list[str]:
    """Labels for one axis in one style, so the axis never mixes "7,500" with "10k"."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    biggest = max(abs(t) for t in ticks)
    scale, suffix = 1.0, ""
    for s, suf in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        # Compact only while it stays short: 1,000,001 beats 1.000001M.
        if biggest >= (10_000 if suf == "k" else s) and _decimals(step / s) <= 2:
            scale, suffix = s, suf
            break
    d = _decimals(step / scale)
    labels = []
    for t in ticks:
        text = f"{t / scale:,.{d}f}"
        if float(text.replace(",", "")) == 0:
            text = "0"
        labels.append(f"{text}{suffix}" if text != "0" else text)
    return labels


def nice_ticks(lo: float, hi: float, *, min_count: int = 4, max_count: int = 6) -> list[float]:
    """Evenly spaced ticks covering lo..hi with a step of 1, 2, 2.5 or 5 x 10^n.

    Picks the tightest covering among those with min_count..max_count ticks (ties: closest to 5 ticks).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("tick range must be finite")
    if lo > hi:
        lo, hi = hi, lo
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    span = hi - lo
    magnitude = math.floor(math.log10(span))
    candidates: list[tuple[tuple[float, int, float], float, int, int]] = []
    fallback: list[tuple[tuple[int, float], float, int, int]] = []
    for exponent in range(magnitude - 2, magnitude + 2):
        for mantissa in _NICE_MANTISSAS:
            step = mantissa * 10**exponent if exponent >= 0 else mantissa / 10**-exponent
            # The epsilon keeps 0.3 / 0.1 == 2.9999999999999996 from adding a tick.
            first = math.floor(lo / step + 1e-9)
            last = math.ceil(hi / step - 1e-9)
            count = last - first + 1
            if min_count <= count <= max_count:
                extent = (last - first) * step
                candidates.append(((round(extent / span, 9), abs(count - 5), -step), step, first, last))
            else:
                distance = min_count - count if count < min_count else count - max_count
                fallback.append(((distance, -step), step, first, last))
    if candidates:
        _, step, first, last = min(candidates)
    else:
        _, step, first, last = min(fallback)
    return [round(k * step, 12) + 0.0 for k in range(first, last + 1)]


# --------------------------------------------------------------------------------------------------
# Series


def _ts(dt: datetime) -> float:
    # Naive datetimes are taken as UTC rather than as the server's local time.
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _clean(points: Sequence[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    """Sorted by time, without NaN or infinite values (they would poison min/max and the scale)."""
    kept = [(at, float(v)) for at, v in points if v is not None and math.isfinite(v)]
    return sorted(kept, key=lambda p: _ts(p[0]))


def _downsample(xy: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most `limit` points: the ends plus the min and max of each bucket, so peaks and dips survive."""
    if len(xy) <= limit:
        return xy
    inner = xy[1:-1]
    buckets = max(1, (limit - 2) // 2)
    size = len(inner) / buckets
    out = [xy[0]]
    for b in range(buckets):
        chunk = range(int(b * size), min(len(inner), int((b + 1) * size)))
        if not chunk:
            continue
        lo = min(chunk, key=lambda i: inner[i][1])
        hi = max(chunk, key=lambda i: inner[i][1])
        out.extend(inner[i] for i in sorted({lo, hi}))
    out.append(xy[-1])
    return out


def _check_status(status: str) -> str:
    status = str(status)
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {sorted(STATUSES)}")
    return status


# --------------------------------------------------------------------------------------------------
# Sparkline


def sparkline(
    points: Sequence[tuple[datetime, float]],
    *,
    status: str,
    width: int = 120,
    height: int = 28,
    label: str,
) -> SafeString:
    """A tiny line of the series with its last point as a dot; a dash when there is nothing to draw."""
    status = _check_status(status)
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
    clean = _clean(points)
    mid = height / 2
    if len(clean) < 2:
        body = f'<line x1="{coord(width * 0.3)}" y1="{coord(mid)}" x2="{coord(width * 0.7)}" y2="{coord(mid)}"/>'
        return mark_safe(f"{head}{body}</svg>")  # numbers only; label escaped above

    pad = 2.5  # room for the dot's radius and the stroke
    xy = [(_ts(at), v) for at, v in clean]
    xy = _downsample(xy, max(4, width))
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


# --------------------------------------------------------------------------------------------------
# Time axis


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _time_ticks(t0: float, t1: float, tz: tzinfo, plot_width: float) -> list[tuple[float, str]]:
    """Local-midnight ticks in `tz`: days under three weeks, weeks under four months, months beyond."""
    start = datetime.fromtimestamp(t0, tz).date()
    span_days = (t1 - t0) / 86400

    def within(d: date) -> bool:
        return formats.midnight(d, tz).timestamp() <= t1

    def fits(labels: list[str]) -> bool:
        widest = max((len(s) for s in labels), default=0) * _CHAR_PX + 14
        return len(labels) <= max(2, int(plot_width // widest))

    first_day = start if formats.midnight(start, tz).timestamp() >= t0 else start + timedelta(1)
    dates: list[date] = []
    labels: list[str] = []
    if span_days < 120:
        if span_days < 21:
            origin, steps = first_day, (1, 2, 3, 7)
        else:
            origin, steps = first_day + timedelta((7 - first_day.weekday()) % 7), (7, 14, 28)  # Mondays
        for step in steps:
            dates = []
            d = origin
            while within(d):
                dates.append(d)
                d += timedelta(step)
            labels = [formats.day(d, year=False) for d in dates]
            if fits(labels):
                break
    else:
        first_month = date(start.year, start.month, 1)
        if formats.midnight(first_month, tz).timestamp() < t0:
            first_month = _add_months(first_month, 1)
        for step in (1, 2, 3, 6, 12, 24, 60):
            # Align to quarters, halves and years so ticks land on Jan/Apr/Jul/Oct, not wherever data starts.
            origin = first_month
            while (origin.month - 1) % min(step, 12) or (step > 12 and origin.year % (step // 12)):
                origin = _add_months(origin, 1)
            dates = []
            d = origin
            while within(d):
                dates.append(d)
                d = _add_months(d, step)
            if step >= 12:
                labels = [str(d.year) for d in dates]
            else:
                labels = [f"{d:%b} {d.year}" if i == 0 or d.month == 1 else f"{d:%b}" for i, d in enumerate(dates)]
            if fits(labels):
                break
    return [(formats.midnight(d, tz).timestamp(), text) for d, text in zip(dates, labels, strict=True)]


# --------------------------------------------------------------------------------------------------
# KPI chart


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
    bands = [Band(b.low, b.high, _check_status(b.status)) for b in bands]
    changes = [Marker(m.at, _check_status(m.status), m.label) for m in changes]
    clean = _clean(points)
    if not clean:
        return _empty_chart(title=title, width=width, height=height)

    xy = [(_ts(at), v) for at, v in clean]
    t0, t1 = xy[0][0], xy[-1][0]
    if t0 == t1:
        t0, t1 = t0 - 43200, t1 + 43200  # one point: centre it in its day

    goals = _clean(target_line or ())
    if len(goals) == 1:
        # A single dated target has no pace to draw; it is a constant target.
        target = goals[0][1] if target is None else target
        goals = []
    goal = goals[-1] if goals else None
    pace = _clip_line([(_ts(at), v) for at, v in goals], t0, t1) if goals else []

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
        left = max(28.0, max(len(s) for s in _tick_labels(ticks)) * _CHAR_PX + 12)
        right = len(last_text) * _CHAR_PX + 14
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
        for tick, text in zip(ticks, _tick_labels(ticks), strict=True):
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
        for t, text in _time_ticks(self.t0, self.t1, tz, self.plot_w):
            x = self.x_of(t)
            half = len(text) * _CHAR_PX / 2
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
            t = _ts(marker.at)
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
        series = _downsample(xy, max(4, int(self.plot_w)))
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
