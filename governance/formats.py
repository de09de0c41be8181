"""How Steerco writes days, times and values, in one place for pages, reasons, emails, charts and the pack.

Times are always shown in the organization's zone; days are computed from wall-clock midnights so that a week
across a DST change is 167 or 169 hours long and never shifted by an hour.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, tzinfo
from functools import lru_cache

from django.utils import timezone

# Units written against the number: "12%", "3pp"; every other unit after a space: "1,210 leads".
_ATTACHED_UNITS = frozenset({"%", "pp"})


# --- time ----------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def midnight(day: date, tz: tzinfo) -> datetime:
    """The start of `day` in `tz`, in UTC: Python subtracts two datetimes sharing one tzinfo on the wall clock,
    which is wrong across DST, so arithmetic is safe only on the UTC instant."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def local_day(at: datetime, tz: tzinfo) -> date:
    return timezone.localtime(at, tz).date()


def when(at: datetime, tz: tzinfo) -> str:
    """A moment as people read it: "Fri 4 Dec 09:00"."""
    local = timezone.localtime(at, tz)
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def day(d: date | datetime, tz: tzinfo | None = None, *, year: bool = True, weekday: bool = False) -> str:
    """A day as people read it: "4 Dec 2026", "4 Dec" or "Fri 4 Dec"; a datetime is first put in `tz`."""
    if isinstance(d, datetime):
        d = timezone.localtime(d, tz).date() if tz else d.date()
    text = f"{d.day} {d:%b}"
    if year:
        text = f"{text} {d.year}"
    return f"{d:%a} {text}" if weekday else text


# --- values ----------------------------------------------------------------------------------------------------


def number(v: float) -> str:
    """1,210 / 940 / 0.25 / 42.86: exact up to three decimals, else four significant digits."""
    if not math.isfinite(v):
        return str(v)
    if v == int(v):
        return f"{int(v):,}"
    rounded = round(v, 3)
    if abs(rounded - v) <= 1e-9 * max(1.0, abs(v)):
        text = f"{rounded:,.3f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    exponent = math.floor(math.log10(abs(v)))
    text = f"{v:,.{max(0, 3 - exponent)}f}"
    return text.rstrip("0") if exponent < 0 else text


def compact(v: float) -> str:
    """A value where space is short (chart axes and labels): 1,235 / 12.5k / 3.4M / 0.372."""
    a = abs(v)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        # Compact from 10k (a four-digit number reads fine with a separator); compare rounded values
        # so 999,999 becomes 1M rather than 1,000k.
        if round(a / scale, 1) >= (10 if suffix == "k" else 1):
            return f"{_strip_zeros(f'{round(v / scale, 1):,.1f}')}{suffix}"
    if a < 1 and v != 0:
        text = f"{v:.3g}"
    else:
        # About four significant digits: 1,297 / 129.7 / 12.97.
        decimals = 0 if a >= 1000 else 1 if a >= 100 else 2
        text = _strip_zeros(f"{v:,.{decimals}f}")
    return "0" if text in ("-0", "") else text


def with_unit(text: str, unit: str) -> str:
    if not unit:
        return text
    return f"{text}{unit}" if unit in _ATTACHED_UNITS else f"{text} {unit}"


def value(v: float | None, unit: str = "", *, short: bool = False) -> str:
    """A KPI value with its unit; "—" when there is none (or one computed before measurements were bounded)."""
    if v is None or not math.isfinite(v):
        return "—"
    return with_unit(compact(v) if short else number(v), unit)


def _strip_zeros(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text
