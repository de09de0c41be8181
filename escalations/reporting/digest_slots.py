"""When a weekly digest is due, in each organization's own timezone: Monday (date.weekday()) at 08:00 local
time; the week it reports runs up to that moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from django.db.models import (
    Case,
    Value,
    When,
)

# When it is due, in each organization's own timezone: Monday (date.weekday()) at 08:00 local time.
SEND_WEEKDAY = 0


SEND_TIME = time(8, 0)


@dataclass(frozen=True)
class Slot:
    """One week's digest in one timezone."""

    week: str  # the ISO week of the local send date, "2026-W49": the dedup key's week
    send_at: datetime  # UTC
    since: datetime  # the previous week's send time (167 or 169 hours earlier across a DST change)


def slot_at(tz: tzinfo, now: datetime) -> Slot | None:
    """The digest due at `now` in `tz`: this week's, once its send time has passed; None before it (on Monday at
    07:00 last week's is history, not due)."""
    today = now.astimezone(tz).date()
    day = today - timedelta(days=(today.weekday() - SEND_WEEKDAY) % 7)
    send_at = _send_moment(day, tz)
    if now < send_at:
        return None
    year, week, _ = day.isocalendar()
    return Slot(f"{year}-W{week:02d}", send_at, _send_moment(day - timedelta(days=7), tz))


def _send_moment(day: date, tz: tzinfo) -> datetime:
    # Wall-clock time in the zone, then UTC, so the digest stays at 08:00 local across DST changes.
    return datetime.combine(day, SEND_TIME, tzinfo=tz).astimezone(UTC)


def by_zone(slots: dict[str, Slot], attr: str, output_field) -> Case:
    """A per-row value that depends on the organization's timezone: its slot's `attr`."""
    return Case(
        *(When(organization__timezone=name, then=Value(getattr(s, attr))) for name, s in slots.items()),
        output_field=output_field,
    )
