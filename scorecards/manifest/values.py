"""How the scorecards sections write values: durations, days, amounts and thresholds, read from a document and
read back from the stored rows in the same canonical form.

- An amount (`recovery_margin`, `surge.change`) is a number in the KPI's unit (5, or "5") or a percentage ("2%"),
  never negative; stored as text ("5", "2%") and exported as the number or the percentage.
- Thresholds are checked by scorecards.evaluation.thresholds.parse_thresholds and stored in its canonical shape.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

from governance.durations import format_duration, parse_duration
from governance.manifest.fields import Entry, num
from scorecards.evaluation.thresholds import PERCENT, Level, ThresholdError, ThresholdSpec, parse_thresholds


def duration_value(text: str | None) -> timedelta | None:
    return parse_duration(text) if text else None


def duration_form(value: timedelta | None) -> str | None:
    return format_duration(value) if value is not None else None


def day_value(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def day_form(value: date | None) -> str | None:
    return value.isoformat() if value else None


def parse_amount(raw: object) -> tuple[float, bool] | None:
    """A number in the KPI's unit (5 or "5") or a percentage ("2%"): (value, is_percentage), or None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return (float(raw), False) if math.isfinite(raw) else None
    if isinstance(raw, str):
        match = PERCENT.match(raw)
        if match:
            return float(match.group(1)), True
        try:
            value = float(raw)
        except ValueError:
            return None
        return (value, False) if math.isfinite(value) else None
    return None


def amount_form(value: float, relative: bool) -> str | float | int:
    return f"{num(value)}%" if relative else num(value)


def stored_amount(text: str) -> str | float | int | None:
    if not text:
        return None
    parsed = parse_amount(text)
    return amount_form(*parsed) if parsed else text


def read_amount(entry: Entry, name: str) -> str | float | int | None:
    raw = entry.raw.get(name)
    if raw is None:
        return None
    parsed = parse_amount(raw)
    if parsed is None:
        entry.error(name, f'must be a number in the KPI\'s unit or a percentage like "2%", not {raw!r}')
        return None
    if parsed[0] < 0:
        entry.error(name, "must not be negative")
    return amount_form(*parsed)


def _level_form(level: Level) -> Any:
    if isinstance(level.value, tuple):
        return [amount_form(level.value[0], level.relative), amount_form(level.value[1], level.relative)]
    return amount_form(level.value, level.relative)


def thresholds_form(spec: ThresholdSpec) -> dict:
    return {"warning": _level_form(spec.warning), "critical": _level_form(spec.critical)}


def stored_thresholds(direction: str, raw: object) -> object:
    try:
        return thresholds_form(parse_thresholds(direction, raw, has_target=True))
    except ThresholdError:
        return raw  # written some other way; compared and exported as it is
