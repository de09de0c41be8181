from __future__ import annotations

from datetime import timedelta

import pytest

from governance.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("6d", timedelta(days=6)),
        ("3w", timedelta(weeks=3)),
        ("0m", timedelta(0)),
    ],
)
def test_it_parses_and_formats_durations_both_ways(text, value):
    assert parse_duration(text) == value
    assert format_duration(value) == text


@pytest.mark.parametrize("value", [timedelta(minutes=90), timedelta(hours=36), timedelta(days=14)])
def test_format_picks_the_largest_exact_unit_and_round_trips(value):
    assert parse_duration(format_duration(value)) == value
    assert format_duration(timedelta(days=14)) == "2w"


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "-1h", "1.5h", "2y", "1H"])
def test_it_refuses_malformed_durations(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
