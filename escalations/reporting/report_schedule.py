"""When a scheduled report is due, pure: a schedule, the organization's business calendar and `now` in; the period
it is due for (its dedup key) and the moment it fell due out, or None.

Times are wall-clock times in the organization's zone, turned into UTC per day, so "Monday 08:00" stays 08:00 local
across a DST change (the week between is 167 or 169 hours long). The first working day of a month is the business
calendar's first opening in it (escalations.engine.timing.BusinessHours), the one the escalations wait for too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from escalations.engine.timing import BusinessHours

WEEKLY, MONTHLY = "weekly", "monthly"


@dataclass(frozen=True)
class Due:
    period: str  # "2026-W49" or "2026-12": one send per subscription and period
    at: datetime  # UTC


def _local(day: date, at: time, hours: BusinessHours) -> datetime:
    return datetime.combine(day, at, tzinfo=hours.tz).astimezone(UTC)


def weekly_due(weekday: int, at: time, hours: BusinessHours, now: datetime) -> Due:
    """This week's send, once its time has passed, else last week's (a late sweep still sends the latest one)."""
    today = now.astimezone(hours.tz).date()
    day = today - timedelta(days=(today.weekday() - weekday) % 7)
    if now < _local(day, at, hours):
        day -= timedelta(days=7)
    year, week, _ = day.isocalendar()
    return Due(f"{year}-W{week:02d}", _local(day, at, hours))


def first_working_day(year: int, month: int, hours: BusinessHours) -> date:
    opening = hours.next_opening(datetime(year, month, 1, tzinfo=hours.tz).astimezone(UTC))
    return opening.astimezone(hours.tz).date()


def monthly_due(at: time, hours: BusinessHours, now: datetime) -> Due:
    """This month's send on its first working day, once its time has passed, else last month's."""
    local = now.astimezone(hours.tz)
    year, month = local.year, local.month
    day = first_working_day(year, month, hours)
    if now < _local(day, at, hours):
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        day = first_working_day(year, month, hours)
    return Due(f"{year}-{month:02d}", _local(day, at, hours))


def review_due(session_id: int, starts: datetime, hours_before: int, now: datetime) -> Due | None:
    """Due `hours_before` the session starts, until it starts; a new time is a new period (the pack goes again)."""
    send_at = starts.astimezone(UTC) - timedelta(hours=hours_before)
    if not send_at <= now < starts:
        return None
    return Due(f"session-{session_id}-{starts.astimezone(UTC):%Y%m%dT%H%M}", send_at)
