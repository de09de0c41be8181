"""An organization's business hours, pure: when they open next, and how much open time a wait takes. Below
escalations (which times its business-hours levels with it) and notify (quiet hours and the daily digest) alike.

All arithmetic is on aware datetimes; hours are read in the organization's zone one local day at a time, so a DST
change never shifts an opening or a wait."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from governance.models import Organization

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True)
class BusinessHours:
    tz: tzinfo
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time

    @classmethod
    def of(cls, tz: tzinfo, days: list[str], start: time, end: time) -> BusinessHours:
        return cls(tz, frozenset(WEEKDAYS.index(day) for day in days), start, end)

    def _bounds(self, day: date) -> tuple[datetime, datetime]:
        # In UTC, so that every subtraction and addition below is real elapsed time.
        return (
            datetime.combine(day, self.start, tzinfo=self.tz).astimezone(UTC),
            datetime.combine(day, self.end, tzinfo=self.tz).astimezone(UTC),
        )

    def next_opening(self, at: datetime) -> datetime:
        """`at` itself when the hours are open then (end excluded), else the next moment they open."""
        day = at.astimezone(self.tz).date()
        for offset in range(8):
            current = day + timedelta(days=offset)
            if current.weekday() not in self.days:
                continue
            opens, closes = self._bounds(current)
            if at < closes:
                return max(at, opens)
        raise ValueError("business hours without any open day")

    def add(self, at: datetime, wait: timedelta) -> datetime:
        """The moment `wait` of open time has passed after `at` (open time only counts)."""
        moment, left = self.next_opening(at), wait
        while True:
            closes = self._bounds(moment.astimezone(self.tz).date())[1]
            if left < closes - moment:
                return moment + left
            left -= closes - moment
            moment = self.next_opening(closes)


def business_hours(org: Organization) -> BusinessHours:
    return BusinessHours.of(org.tzinfo, org.business_days, org.business_start, org.business_end)
