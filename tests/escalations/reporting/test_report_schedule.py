"""When scheduled reports fall due, as pure functions: local wall-clock times across DST changes, the first working
day from the organization's business calendar, the hours before a review."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time

import pytest

from escalations.engine.timing import BusinessHours
from escalations.reporting.report_schedule import first_working_day, monthly_due, review_due, weekly_due

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
WEEKDAYS = BusinessHours.of(BERLIN, ["mon", "tue", "wed", "thu", "fri"], time(9), time(17))


@pytest.mark.parametrize(
    ("now", "period", "at"),
    [
        # Before Monday 08:00 local: last week's is the latest.
        (datetime(2026, 3, 23, 6, 59, tzinfo=UTC), "2026-W12", datetime(2026, 3, 16, 7, 0, tzinfo=UTC)),
        # Monday 23 March 08:00 CET is 07:00 UTC.
        (datetime(2026, 3, 23, 7, 0, tzinfo=UTC), "2026-W13", datetime(2026, 3, 23, 7, 0, tzinfo=UTC)),
        # After the change on Sunday 29 March, Monday 30 March 08:00 CEST is 06:00 UTC: 167 hours later.
        (datetime(2026, 3, 30, 5, 59, tzinfo=UTC), "2026-W13", datetime(2026, 3, 23, 7, 0, tzinfo=UTC)),
        (datetime(2026, 3, 30, 6, 0, tzinfo=UTC), "2026-W14", datetime(2026, 3, 30, 6, 0, tzinfo=UTC)),
        # Back on Sunday 25 October: Monday 26 October 08:00 CET is 07:00 UTC again.
        (datetime(2026, 10, 26, 6, 30, tzinfo=UTC), "2026-W43", datetime(2026, 10, 19, 6, 0, tzinfo=UTC)),
        (datetime(2026, 10, 26, 7, 0, tzinfo=UTC), "2026-W44", datetime(2026, 10, 26, 7, 0, tzinfo=UTC)),
    ],
)
def test_weekly_reports_keep_their_local_time_across_dst(now, period, at):
    due = weekly_due(0, time(8), WEEKDAYS, now)
    assert (due.period, due.at) == (period, at)
    assert due.at.astimezone(BERLIN).time() == time(8)


@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [
        (2026, 2, datetime(2026, 2, 2).date()),  # 1 February 2026 is a Sunday
        (2026, 8, datetime(2026, 8, 3).date()),  # a Saturday
        (2026, 12, datetime(2026, 12, 1).date()),  # a Tuesday
    ],
)
def test_the_first_working_day_follows_the_business_days(year, month, expected):
    assert first_working_day(year, month, WEEKDAYS) == expected


def test_a_seven_day_organization_sends_on_the_first():
    every_day = BusinessHours.of(BERLIN, ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], time(9), time(17))
    assert first_working_day(2026, 2, every_day) == datetime(2026, 2, 1).date()


def test_monthly_reports_are_due_on_the_first_working_day_at_their_time():
    before = monthly_due(time(8), WEEKDAYS, datetime(2026, 2, 2, 6, 59, tzinfo=UTC))
    assert before.period == "2026-01"  # Monday 2 February 08:00 CET is 07:00 UTC: not yet
    due = monthly_due(time(8), WEEKDAYS, datetime(2026, 2, 2, 7, 0, tzinfo=UTC))
    assert (due.period, due.at) == ("2026-02", datetime(2026, 2, 2, 7, 0, tzinfo=UTC))
    # Across the year: before Thursday 1 January 08:00 the latest is December's.
    assert monthly_due(time(8), WEEKDAYS, datetime(2026, 1, 1, 6, 59, tzinfo=UTC)).period == "2025-12"
    assert monthly_due(time(8), WEEKDAYS, datetime(2026, 1, 1, 7, 0, tzinfo=UTC)).period == "2026-01"


def test_a_review_report_is_due_hours_before_until_the_session_starts():
    starts = datetime(2026, 12, 9, 9, 0, tzinfo=UTC)
    assert review_due(7, starts, 24, datetime(2026, 12, 8, 8, 59, tzinfo=UTC)) is None
    due = review_due(7, starts, 24, datetime(2026, 12, 8, 9, 0, tzinfo=UTC))
    assert due.period == "session-7-20261209T0900" and due.at == datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    assert review_due(7, starts, 24, starts) is None
