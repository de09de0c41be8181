"""One evaluation of one KPI: the raw status from its recent points, then the official status through the
pending, recovery, first-data and stale rules of SEMANTICS.md section 1, plus the surge signal. Pure: numbers,
dates and frozen dataclasses in and out, no ORM, so the sweep can run it for a whole batch in memory.

The choices made where SEMANTICS.md is silent are listed in README.md ("Evaluation semantics"); keep the two
in step.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple

from governance import formats
from governance.durations import format_duration
from scorecards.aggregations import AGGREGATIONS, LAST
from scorecards.evaluation.aggregate import aggregate, rolling
from scorecards.evaluation.thresholds import (
    AT_RISK,
    DECREASE,
    INCREASE,
    OFF_TRACK,
    ON_TRACK,
    RANGE,
    Level,
    ThresholdError,
    Thresholds,
    ThresholdSpec,
    parse_number,
    parse_thresholds,
    raw_status,
)

STALE, NO_DATA = "stale", "no_data"
WARNING, CRITICAL = "warning", "critical"
SEVERITY = {ON_TRACK: 0, AT_RISK: 1, OFF_TRACK: 2}
FORECAST_WINDOW = timedelta(days=28)
FORECAST_MIN_POINTS = 5
MIN_LOOKBACK = timedelta(days=1)
_at = itemgetter(0)


@dataclass(frozen=True)
class Rule:
    direction: str
    thresholds: dict
    target_value: float | None
    target_by: date | None
    baseline_value: float | None
    baseline_at: date | None
    aggregate_fn: str
    aggregate_window: timedelta | None
    stale_after: timedelta
    pending_for: timedelta
    keep_for: timedelta
    recovery_margin: str = ""
    surge_change: str = ""
    surge_window: timedelta | None = None
    forecast: bool = False
    unit: str = ""
    tz: tzinfo = UTC
    # A cache, not part of the rule's value: its thresholds as resolved for the last moment it was evaluated
    # at (see `_resolved`).
    _resolved_at: dict = field(default_factory=dict, init=False, repr=False, compare=False)


# State and Decision are named tuples rather than frozen dataclasses: a sweep makes one of each per KPI, and a frozen
# dataclass sets each field through object.__setattr__, which cost a fifth of an evaluation.
class State(NamedTuple):
    status: str
    status_since: datetime | None
    pending_status: str = ""
    pending_since: datetime | None = None
    last_surge_at: datetime | None = None


@dataclass(frozen=True)
class Surge:
    previous: float
    current: float
    change: float


class Decision(NamedTuple):
    status: str
    status_since: datetime | None
    pending_status: str
    pending_since: datetime | None
    raw: str
    value: float | None
    thresholds: dict
    reason: str
    changed: bool
    old_status: str
    surge: Surge | None = None
    last_surge_at: datetime | None = None


class _Observation(NamedTuple):
    raw: str
    value: float | None
    thresholds: Thresholds | None
    reason: str


class _Resolved(NamedTuple):
    spec: ThresholdSpec
    reference: float | None
    reference_name: str
    thresholds: Thresholds


def lookback(rule: Rule) -> timedelta:
    """How far before `now` the caller must load points so that `evaluate` sees everything it needs."""
    window = rule.aggregate_window
    # Without a window the newest point is the value, and a fresh one may be up to stale_after old.
    needed = [MIN_LOOKBACK, window if window is not None else rule.stale_after]
    if rule.surge_change and rule.surge_window:
        needed.append(2 * rule.surge_window)
    if rule.forecast and rule.target_by is not None:
        needed.append(FORECAST_WINDOW + (window or timedelta(0)))
    return max(needed)


def newest_only(rule: Rule) -> bool:
    """Whether the newest point is all `evaluate` looks at (no window, no surge, no forecast)."""
    surge = bool(rule.surge_change and rule.surge_window)
    forecast = rule.forecast and rule.target_by is not None
    return rule.aggregate_window is None and not surge and not forecast


def evaluate(
    rule: Rule,
    state: State,
    points: Sequence[tuple[datetime, float]],
    newest_at: datetime | None,
    now: datetime,
) -> Decision:
    now = now.astimezone(UTC)  # real elapsed time, also when a caller passes a local time
    # Points after `now` are invisible to this evaluation (a re-run for a past moment sees what it saw then).
    visible = points[: bisect_right(points, now, key=_at)]
    observed = _observe(rule, state, visible, newest_at, now)
    raw, reason = observed.raw, observed.reason
    if rule.forecast and raw == ON_TRACK and observed.thresholds is not None:
        miss = _forecast_miss(rule, visible, now)
        if miss:
            raw, reason = AT_RISK, f"{reason}; {miss}"

    decision = _decide(rule, state, raw, reason, now)
    surge = _surge(rule, visible, now) if rule.surge_change and rule.surge_window else None
    if surge is not None and state.last_surge_at is not None and now - state.last_surge_at < rule.surge_window:
        surge = None  # at most one surge signal per window
    status, since, pending, pending_since, reason = decision
    if surge is not None:
        reason = f"{reason}; {_surge_text(rule, surge)}"
    return Decision(
        status=status,
        status_since=since,
        pending_status=pending,
        pending_since=pending_since,
        raw=raw,
        value=observed.value,
        thresholds=_thresholds_json(observed.thresholds),
        reason=reason,
        changed=status != state.status,
        old_status=state.status,
        surge=surge,
        last_surge_at=now if surge is not None else state.last_surge_at,
    )


# --- the raw status -------------------------------------------------------------------------------------------


def _observe(
    rule: Rule, state: State, visible: Sequence[tuple[datetime, float]], newest_at: datetime | None, now: datetime
) -> _Observation:
    if newest_at is None:
        return _Observation(NO_DATA, None, None, "no measurement yet")
    if newest_at > now:
        if not visible:
            if state.status == NO_DATA:
                return _Observation(NO_DATA, None, None, "no measurement yet")
            return _Observation(STALE, None, None, f"no measurement up to now in the last {_span(lookback(rule))}")
        newest_at = visible[-1][0]
    age = now - newest_at
    value = _aggregate(visible, rule.aggregate_fn, rule.aggregate_window, now)
    if age > rule.stale_after:
        reason = f"newest data {_span(age)} old (stale after {_exact(rule.stale_after)})"
        return _Observation(STALE, value, None, reason)
    if value is None:
        where = f"the {_window_label(rule.aggregate_window)} window" if rule.aggregate_window else "the loaded points"
        return _Observation(STALE, None, None, f"no measurement in {where} (newest data {_span(age)} old)")

    spec, reference, reference_name, t = _resolved(rule, now)
    raw = raw_status(value, t)
    subject = _subject(rule, value)
    reason = _compare(subject, raw, t) + _relative(spec, raw, reference_name, reference)

    # Recovery: leaving a breach needs the value better than the breached threshold by the margin.
    if state.status in (AT_RISK, OFF_TRACK) and SEVERITY[raw] < SEVERITY[state.status] and rule.recovery_margin:
        shifted = _shift(t, _margin(rule.recovery_margin))
        margined = raw_status(value, shifted)
        held = margined if SEVERITY[margined] < SEVERITY[state.status] else state.status
        if held != raw:
            blocked = WARNING if raw == ON_TRACK else CRITICAL
            needs = _needs(shifted, blocked)
            reason = f"{reason}, inside the recovery margin {rule.recovery_margin} (needs {needs})"
            raw = held
    return _Observation(raw, value, t, reason)


def _aggregate(
    visible: Sequence[tuple[datetime, float]], fn: str, window: timedelta | None, at: datetime
) -> float | None:
    """aggregate() over only the points that can be in (at - window, at]: bisect instead of a full scan."""
    end = bisect_right(visible, at, key=_at)
    start = bisect_right(visible, at - window, 0, end, key=_at) if window is not None else max(0, end - 1)
    value = aggregate(visible[start:end], fn, window, at)
    if value is not None and not math.isfinite(value):
        # Stored points are bounded (MEASUREMENT_MAX_ABS), so this is data from before the bound: the KPI records
        # the error and the sweep goes on, rather than storing a value no page or JSON can show.
        raise ValueError(f"the {fn} of the window is not a finite number")
    return value


def _resolved(rule: Rule, now: datetime) -> _Resolved:
    """The rule's thresholds at `now`. A sweep evaluates thousands of KPIs sharing one Rule at one moment, so
    they are resolved once for that moment rather than once per KPI."""
    resolved = rule._resolved_at.get(now)
    if resolved is None:
        spec = _spec(rule.direction, rule.thresholds, rule.target_value is not None)
        reference, reference_name = _reference(rule, now)
        resolved = _Resolved(spec, reference, reference_name, spec.resolve(reference))
        rule._resolved_at.clear()  # only the latest moment: a rule is evaluated at one moment after another
        rule._resolved_at[now] = resolved
    return resolved


def _freeze(raw: object) -> object:
    return tuple(_freeze(x) for x in raw) if isinstance(raw, list | tuple) else raw


def _spec(direction: str, thresholds: dict, has_target: bool) -> ThresholdSpec:
    try:
        return _cached_spec(direction, tuple(thresholds.items()), has_target)
    except TypeError:  # range pairs are lists: freeze them
        pass
    try:
        return _cached_spec(direction, tuple((k, _freeze(v)) for k, v in thresholds.items()), has_target)
    except TypeError:  # unhashable junk: let the parser say what is wrong
        return parse_thresholds(direction, thresholds, has_target=has_target)


@lru_cache(maxsize=8192)
def _cached_spec(direction: str, key: tuple, has_target: bool) -> ThresholdSpec:
    # 100,000 KPIs share a few hundred threshold shapes; parsing once per shape keeps the sweep fast.
    return parse_thresholds(direction, dict(key), has_target=has_target)


@lru_cache(maxsize=256)
def _margin(text: str) -> tuple[float, bool]:
    """recovery_margin: "" -> 0, "5" -> 5 in the KPI's unit, "2%" -> 2 percent of the threshold's value."""
    text = text.strip()
    if not text:
        return 0.0, False
    if text.endswith("%"):
        value, relative = parse_number(text, "recovery_margin")
    else:
        try:
            number = float(text)
        except ValueError:
            raise ThresholdError(f'recovery_margin must be a number or a percentage like "2%", not {text!r}') from None
        value, relative = parse_number(number, "recovery_margin")
    if value < 0:
        raise ThresholdError("recovery_margin must not be negative")
    return value, relative


@lru_cache(maxsize=256)
def _surge_fraction(text: str) -> float:
    value, relative = parse_number(text, "surge change")
    if not relative or value <= 0:
        raise ThresholdError(f'surge change must be a positive percentage like "30%", not {text!r}')
    return value / 100


def pace(rule: Rule, now: datetime) -> float | None:
    """The reference relative thresholds resolve against: the target, or for a dated target with a baseline
    the value on the straight line from baseline to target at `now` (real elapsed time, clamped)."""
    target, now = rule.target_value, now.astimezone(UTC)
    if target is None or rule.target_by is None or rule.baseline_value is None or rule.baseline_at is None:
        return target
    start, end = formats.midnight(rule.baseline_at, rule.tz), formats.midnight(rule.target_by, rule.tz)
    if end <= start:
        return target
    share = min(1.0, max(0.0, (now - start) / (end - start)))
    return rule.baseline_value + (target - rule.baseline_value) * share


def _reference(rule: Rule, now: datetime) -> tuple[float | None, str]:
    reference = pace(rule, now)
    dated = rule.target_by is not None and rule.baseline_value is not None and rule.baseline_at is not None
    return reference, "pace" if dated and reference != rule.target_value else "target"


def _shift(t: Thresholds, margin: tuple[float, bool]) -> Thresholds:
    """The thresholds moved towards the better side by the recovery margin."""
    amount, relative = margin

    def by(x: float) -> float:
        return abs(x) * amount / 100 if relative else amount

    if t.direction == INCREASE:
        return Thresholds(t.direction, t.warning + by(t.warning), t.critical + by(t.critical))
    if t.direction == DECREASE:
        return Thresholds(t.direction, t.warning - by(t.warning), t.critical - by(t.critical))
    (w_lo, w_hi), (c_lo, c_hi) = t.warning, t.critical
    return Thresholds(t.direction, (w_lo + by(w_lo), w_hi - by(w_hi)), (c_lo + by(c_lo), c_hi - by(c_hi)))


def _needs(t: Thresholds, level: str) -> str:
    threshold = t.warning if level == WARNING else t.critical
    if t.direction == RANGE:
        return f"{formats.number(threshold[0])}-{formats.number(threshold[1])}"
    return f"{'>=' if t.direction == INCREASE else '<='} {formats.number(threshold)}"


# --- the official status --------------------------------------------------------------------------------------


def _side(official: str, raw: str) -> int | str:
    """Which way `raw` lies from `official`: candidates on the same side share one pending clock."""
    if official == STALE and raw in SEVERITY:
        return "fresh"
    if official in SEVERITY and raw in SEVERITY:
        return 1 if SEVERITY[raw] > SEVERITY[official] else -1
    return raw


def _decide(
    rule: Rule, state: State, raw: str, reason: str, now: datetime
) -> tuple[str, datetime | None, str, datetime | None, str]:
    official = state.status
    if raw == official:
        return official, state.status_since, "", None, reason
    if official == NO_DATA:
        return raw, now, "", None, reason  # first data: no wait
    since = now
    if (
        state.pending_status
        and state.pending_since is not None
        and _side(official, state.pending_status) == _side(official, raw)
    ):
        since = state.pending_since
    recovering = official in (AT_RISK, OFF_TRACK) and raw in SEVERITY and SEVERITY[raw] < SEVERITY[official]
    wait = rule.keep_for if recovering else rule.pending_for
    held = now - since
    if held >= wait:
        return raw, now, "", None, reason + (f" since {_clock(since, now, rule.tz)}" if since < now else "")
    return (
        official,
        state.status_since,
        raw,
        since,
        f"{reason} since {_clock(since, now, rule.tz)}; pending {_span(held)} of {_exact(wait)}",
    )


# --- forecast and surge ---------------------------------------------------------------------------------------


def _forecast_miss(rule: Rule, visible: Sequence[tuple[datetime, float]], now: datetime) -> str:
    """The reason part for a projected miss of the dated target, or "" (no miss, or not enough points)."""
    if rule.target_value is None or rule.target_by is None:
        return ""
    end = formats.midnight(rule.target_by, rule.tz)
    if end <= now:
        return ""
    start = now - FORECAST_WINDOW
    window = rule.aggregate_window
    first = bisect_right(visible, start - (window or timedelta(0)), key=_at)
    series = [(t, v) for t, v in rolling(visible[first:], rule.aggregate_fn, window) if t > start]
    if len(series) < FORECAST_MIN_POINTS:
        return ""
    # Least squares in days from now, so the numbers stay small.
    xs = [(t - now).total_seconds() / 86400 for t, _ in series]
    ys = [v for _, v in series]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return ""
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    projected = mean_y + slope * ((end - now).total_seconds() / 86400 - mean_x)
    target = rule.target_value
    if rule.direction == INCREASE:
        miss = f"short of target {formats.number(target)}" if projected < target else ""
    elif rule.direction == DECREASE:
        miss = f"above target {formats.number(target)}" if projected > target else ""
    else:
        low, high = _spec(rule.direction, rule.thresholds, True).resolve(target).warning
        miss = (
            "" if low <= projected <= high else f"outside the warning band {formats.number(low)}-{formats.number(high)}"
        )
    if not miss:
        return ""
    by = formats.day(rule.target_by, year=rule.target_by.year != now.astimezone(rule.tz).year)
    return f"projected {formats.with_unit(formats.number(projected), rule.unit)} by {by}, {miss}"


def _surge(rule: Rule, visible: Sequence[tuple[datetime, float]], now: datetime) -> Surge | None:
    window = rule.surge_window
    fn = "sum" if rule.aggregate_fn == LAST else rule.aggregate_fn
    current = _aggregate(visible, fn, window, now)
    previous = _aggregate(visible, fn, window, now - window)
    if current is None or previous is None or previous == 0:
        return None
    fraction = _surge_fraction(rule.surge_change)
    # Compared multiplied out, so "exactly 30%" is a surge without float noise from the division.
    if abs(current - previous) < fraction * abs(previous):
        return None
    return Surge(previous=previous, current=current, change=(current - previous) / abs(previous))


def _surge_text(rule: Rule, surge: Surge) -> str:
    percent = f"{surge.change * 100:+.0f}%"
    before, after = formats.number(surge.previous), formats.with_unit(formats.number(surge.current), rule.unit)
    return f"surge {percent} over {_exact(rule.surge_window)} ({before} -> {after})"


# --- words and numbers ----------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _window_label(window: timedelta) -> str:
    return f"{window.days}-day" if window % timedelta(days=1) == timedelta(0) else _exact(window)


def _subject(rule: Rule, value: float) -> str:
    text = formats.with_unit(formats.number(value), rule.unit)
    if rule.aggregate_window is None or rule.aggregate_fn == LAST:
        return text
    return f"{_window_label(rule.aggregate_window)} {AGGREGATIONS[rule.aggregate_fn].noun} {text}"


def _compare(subject: str, status: str, t: Thresholds) -> str:
    return f"{subject} {_verdict(status, t.direction, t.warning, t.critical)}"


@lru_cache(maxsize=4096)
def _verdict(status: str, direction: str, warning: float | tuple, critical: float | tuple) -> str:
    """The words after the value in `_compare`: a sweep's KPIs share a few thresholds, so each is written once."""
    t = Thresholds(direction, warning, critical)
    if t.direction == RANGE:
        (w_lo, w_hi), (c_lo, c_hi) = t.warning, t.critical
        warning_band, critical_band = (
            f"{formats.number(w_lo)}-{formats.number(w_hi)}",
            f"{formats.number(c_lo)}-{formats.number(c_hi)}",
        )
        if status == ON_TRACK:
            return f"inside the warning band {warning_band}"
        if status == AT_RISK:
            return f"outside the warning band {warning_band}"
        return f"outside the critical band {critical_band}"
    better, worse = (">=", "<") if t.direction == INCREASE else ("<=", ">")
    if status == ON_TRACK:
        return f"{better} warning {formats.number(t.warning)}"
    if status == AT_RISK:
        return f"{worse} warning {formats.number(t.warning)}"
    return f"{worse} critical {formats.number(t.critical)}"


def _relative(spec: ThresholdSpec, status: str, name: str, reference: float | None) -> str:
    """The "(95% of target 1,200)" of relative thresholds, naming the level the comparison used."""
    if not spec.warning.relative or reference is None:
        return ""
    level: Level = spec.critical if status == OFF_TRACK else spec.warning
    share = level.value
    percent = (
        f"{formats.number(share[0])}%-{formats.number(share[1])}%"
        if isinstance(share, tuple)
        else f"{formats.number(share)}%"
    )
    return f" ({percent} of {name} {formats.number(reference)})"


@lru_cache(maxsize=1024)
def _exact(value: timedelta) -> str:
    try:
        return format_duration(value)
    except ValueError:  # not a whole number of minutes
        return _span(value)


def _span(value: timedelta) -> str:
    """An elapsed time floored to the minute, in its two largest units: "1h 5m", "4d 3h", "45m"."""
    minutes = max(0, int(value.total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        # "3d 5m" rather than "3d", so an age just past stale_after never reads as equal to it.
        return f"{days}d {hours}h" if hours else f"{days}d {mins}m" if mins else f"{days}d"
    if hours:
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    return f"{mins}m"


def _clock(at: datetime, now: datetime, tz: tzinfo) -> str:
    local, today = at.astimezone(tz), now.astimezone(tz).date()
    return f"{local:%H:%M}" if local.date() == today else f"{local.day} {local:%b %H:%M}"


def _thresholds_json(t: Thresholds | None) -> dict:
    if t is None:
        return {}
    return dict(_json_of(t.direction, t.warning, t.critical))  # a copy: the cached one is shared


@lru_cache(maxsize=4096)
def _json_of(direction: str, warning: float | tuple, critical: float | tuple) -> dict:
    def clean(x: float | tuple[float, float]) -> float | list[float]:
        return [round(x[0], 6), round(x[1], 6)] if isinstance(x, tuple) else round(x, 6)

    return {"warning": clean(warning), "critical": clean(critical)}
