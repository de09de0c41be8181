"""Days, times and values as every page, reason, email and chart writes them (governance.formats)."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from governance import formats

BERLIN = ZoneInfo("Europe/Berlin")


def test_a_day_across_the_spring_dst_change_is_23_hours_long():
    start, end = formats.midnight(date(2026, 3, 29), BERLIN), formats.midnight(date(2026, 3, 30), BERLIN)
    assert end - start == timedelta(hours=23)
    assert start == datetime(2026, 3, 28, 23, tzinfo=UTC)


def test_a_moment_is_written_in_the_organizations_zone():
    assert formats.when(datetime(2026, 12, 4, 8, 5, tzinfo=UTC), BERLIN) == "Fri 4 Dec 09:05"
    assert formats.local_day(datetime(2026, 12, 4, 23, 30, tzinfo=UTC), BERLIN) == date(2026, 12, 5)


def test_days_with_and_without_year_and_weekday():
    assert formats.day(date(2026, 12, 4)) == "4 Dec 2026"
    assert formats.day(date(2026, 12, 4), year=False) == "4 Dec"
    assert formats.day(datetime(2026, 12, 4, 23, 30, tzinfo=UTC), BERLIN, year=False, weekday=True) == "Sat 5 Dec"


@pytest.mark.parametrize(
    ("v", "text"),
    [(1210, "1,210"), (0.25, "0.25"), (42.857142, "42.86"), (-0.0, "0"), (1234.5, "1,234.5"), (0.0012345, "0.001234")],
)
def test_exact_numbers_keep_what_people_typed(v, text):
    assert formats.number(v) == text


@pytest.mark.parametrize(("v", "text"), [(1297, "1,297"), (12_500, "12.5k"), (999_999, "1M"), (0.3721, "0.372")])
def test_compact_numbers_fit_a_chart(v, text):
    assert formats.compact(v) == text


def test_units_attach_as_people_write_them():
    assert formats.value(12.5, "%") == "12.5%"
    assert formats.value(3, "pp") == "3pp"
    assert formats.value(1210, "leads") == "1,210 leads"
    assert formats.value(12_500, "EUR", short=True) == "12.5k EUR"
    assert formats.value(None, "leads") == "—"
    assert formats.value(float("inf")) == "—"
