"""The drawing primitives of the SVG charts: coordinates, value and time ticks, series cleaning, statuses.

The charts themselves are sparkline.py and line_chart.py. The CSP forbids inline styles, so every element is
styled by class from static/css/charts.css; the markup is meant to be inlined in HTML, hence no xmlns attribute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo

from governance import formats

STATUSES = frozenset({"on_track", "at_risk", "off_track", "stale", "no_data"})

# Average glyph advance of 11px UI fonts; used to reserve room for labels without measuring text.
CHAR_PX = 6.6
_NICE_MANTISSAS = (1.0, 2.0, 2.5, 5.0)


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


def tick_labels(ticks: Sequence[float]) -> list[str]:
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


def timestamp(dt: datetime) -> float:
    # Naive datetimes are taken as UTC rather than as the server's local time.
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def clean_series(points: Sequence[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    """Sorted by time, without NaN or infinite values (they would poison min/max and the scale)."""
    kept = [(at, float(v)) for at, v in points if v is not None and math.isfinite(v)]
    return sorted(kept, key=lambda p: timestamp(p[0]))


def downsample(xy: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
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


def check_status(status: str) -> str:
    status = str(status)
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {sorted(STATUSES)}")
    return status


# --------------------------------------------------------------------------------------------------
# Time axis


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def time_ticks(t0: float, t1: float, tz: tzinfo, plot_width: float) -> list[tuple[float, str]]:
    """Local-midnight ticks in `tz`: days under three weeks, weeks under four months, months beyond."""
    start = datetime.fromtimestamp(t0, tz).date()
    span_days = (t1 - t0) / 86400

    def within(d: date) -> bool:
        return formats.midnight(d, tz).timestamp() <= t1

    def fits(labels: list[str]) -> bool:
        widest = max((len(s) for s in labels), default=0) * CHAR_PX + 14
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
