"""Thresholds as the manifest writes them, validated, resolved against a target, and turned into a status.

Pure: no ORM. Shared by the manifest, the KPI forms, the demo seed and the evaluator.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date

from governance import formats

INCREASE, DECREASE, RANGE = "increase", "decrease", "range"
ON_TRACK, AT_RISK, OFF_TRACK = "on_track", "at_risk", "off_track"
PERCENT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*%\s*$")


class ThresholdError(ValueError):
    pass


@dataclass(frozen=True)
class Level:
    """One threshold: an absolute number, or a percentage of the reference (target or pace)."""

    value: float | tuple[float, float]
    relative: bool

    def resolve(self, reference: float | None) -> float | tuple[float, float]:
        if not self.relative:
            return self.value
        if reference is None:
            raise ThresholdError("relative thresholds need a target")
        if isinstance(self.value, tuple):
            return (reference * self.value[0] / 100, reference * self.value[1] / 100)
        return reference * self.value / 100


@dataclass(frozen=True)
class ThresholdSpec:
    direction: str
    warning: Level
    critical: Level

    def resolve(self, reference: float | None) -> Thresholds:
        return Thresholds(self.direction, self.warning.resolve(reference), self.critical.resolve(reference))


@dataclass(frozen=True)
class Thresholds:
    """Absolute thresholds, ready to compare a value against."""

    direction: str
    warning: float | tuple[float, float]
    critical: float | tuple[float, float]


def parse_number(raw: object, what: str) -> tuple[float, bool]:
    """A finite number, or a percentage string like "95%"; returns (value, is_relative)."""
    if isinstance(raw, bool):
        raise ThresholdError(f'{what} must be a number or a percentage like "95%", not {raw!r}')
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise ThresholdError(f"{what} must be a finite number")
        return float(raw), False
    if isinstance(raw, str):
        match = PERCENT.match(raw)
        if match:
            return float(match.group(1)), True
    raise ThresholdError(f'{what} must be a number or a percentage like "95%", not {raw!r}')


def _level(raw: object, name: str, direction: str) -> Level:
    if direction == RANGE:
        if not isinstance(raw, list | tuple) or len(raw) != 2:
            raise ThresholdError(f"{name} must be a pair [low, high] for direction range")
        (low, low_rel), (high, high_rel) = (
            parse_number(raw[0], f"{name} low"),
            parse_number(raw[1], f"{name} high"),
        )
        if low_rel != high_rel:
            raise ThresholdError(f"{name} must give both ends as numbers or both as percentages")
        if low > high:
            raise ThresholdError(f"{name} low must not be above its high")
        return Level((low, high), low_rel)
    value, relative = parse_number(raw, name)
    return Level(value, relative)


def parse_thresholds(direction: str, raw: object, *, has_target: bool) -> ThresholdSpec:
    """Validates the manifest's `thresholds` for `direction`; every message reads after "thresholds: "."""
    if direction not in (INCREASE, DECREASE, RANGE):
        raise ThresholdError(f'unknown direction "{direction}"; use increase, decrease or range')
    if not isinstance(raw, dict):
        raise ThresholdError("must be a mapping with warning and critical")
    unknown = set(raw) - {"warning", "critical"}
    if unknown:
        raise ThresholdError(f"unknown field {sorted(unknown)[0]!r}; only warning and critical")
    missing = [name for name in ("warning", "critical") if name not in raw]
    if missing:
        raise ThresholdError(f"{missing[0]} is required")
    warning, critical = (
        _level(raw["warning"], "warning", direction),
        _level(raw["critical"], "critical", direction),
    )
    if warning.relative != critical.relative:
        raise ThresholdError("warning and critical must both be absolute or both be percentages")
    if warning.relative and not has_target:
        raise ThresholdError("percentages are relative to the target; set a target or use numbers")
    if direction == INCREASE and not warning.value > critical.value:
        raise ThresholdError("warning must be above critical for direction increase")
    if direction == DECREASE and not warning.value < critical.value:
        raise ThresholdError("warning must be below critical for direction decrease")
    if direction == RANGE:
        (w_low, w_high), (c_low, c_high) = warning.value, critical.value
        if not (c_low <= w_low and w_high <= c_high):
            raise ThresholdError("the critical range must contain the warning range")
    return ThresholdSpec(direction, warning, critical)


def settings_errors(
    direction: str,
    thresholds: object,
    *,
    target_value: float | None,
    target_by: date | None,
    baseline_value: float | None,
    baseline_at: date | None,
) -> dict[str, str]:
    """What is wrong with a KPI's thresholds, target and baseline taken together, by field name: the KPI settings
    form and an executive's target change apply the same rules. `thresholds` None: not given yet, not checked."""
    errors = {}
    try:
        if thresholds is not None:
            parse_thresholds(direction, thresholds, has_target=target_value is not None)
    except ThresholdError as e:
        errors["critical" if str(e).startswith("critical") else "warning"] = str(e)
    if target_by and target_value is None:
        errors["target_value"] = "A dated target needs its value."
    if (baseline_value is None) != (baseline_at is None):
        errors["baseline_at"] = "Give the baseline's value and date together."
    elif baseline_at and target_by and baseline_at >= target_by:
        errors["target_by"] = f"The target date must come after the baseline ({formats.day(baseline_at)})."
    elif baseline_at and not target_by:
        errors["target_by"] = "A baseline needs a dated target: give the target's date."
    return errors


def raw_status(value: float, t: Thresholds) -> str:
    """MANIFEST.md's status semantics; a value exactly on a threshold belongs to the better status."""
    if t.direction == INCREASE:
        return ON_TRACK if value >= t.warning else AT_RISK if value >= t.critical else OFF_TRACK
    if t.direction == DECREASE:
        return ON_TRACK if value <= t.warning else AT_RISK if value <= t.critical else OFF_TRACK
    (w_low, w_high), (c_low, c_high) = t.warning, t.critical
    if w_low <= value <= w_high:
        return ON_TRACK
    return AT_RISK if c_low <= value <= c_high else OFF_TRACK
