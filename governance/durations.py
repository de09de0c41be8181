"""Durations as people write them in manifests and forms: `<n>m`, `<n>h`, `<n>d` or `<n>w`."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
PATTERN = re.compile(r"^(\d{1,6})([mhdw])$")


def parse_duration(text: str) -> timedelta:
    match = PATTERN.match(str(text).strip())
    if not match:
        raise ValueError(f'"{text}" is not a duration; write <n>m, <n>h, <n>d or <n>w (e.g. 2h, 7d)')
    return int(match.group(1)) * UNITS[match.group(2)]


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling, so that parse(format(x)) == x and exports stay stable."""
    if value < timedelta(0) or value % UNITS["m"]:
        raise ValueError(f"{value} is not a whole number of minutes")
    if not value:
        return "0m"
    for unit, size in UNITS.items():
        if value % size == timedelta(0):
            return f"{value // size}{unit}"
    raise AssertionError("unreachable: every whole minute count divides by 1m")
