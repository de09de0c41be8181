from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scorecards.evaluation.aggregate import aggregate, rolling

T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)
DAILY = [(T0 + timedelta(days=i), float(v)) for i, v in enumerate([10, 20, 30, 40, 50])]


@pytest.mark.parametrize(
    ("fn", "window", "expected"),
    [
        ("last", None, 50),
        ("sum", timedelta(days=2), 90),  # (t-2d, t]: the point exactly 2 days back is outside
        ("avg", timedelta(days=3), 40),
        ("min", timedelta(days=3), 30),
        ("max", timedelta(days=7), 50),
        ("sum", timedelta(days=7), 150),
    ],
)
def test_aggregate_over_the_window_ending_now(fn, window, expected):
    assert aggregate(DAILY, fn, window, DAILY[-1][0]) == expected


def test_aggregate_without_points_in_the_window_is_none():
    assert aggregate(DAILY, "sum", timedelta(hours=1), T0 + timedelta(days=10)) is None
    assert aggregate([], "last", None, T0) is None


@pytest.mark.parametrize("fn", ["sum", "avg", "min", "max", "last"])
def test_rolling_matches_aggregate_at_every_point(fn):
    window = timedelta(days=2)
    assert rolling(DAILY, fn, window) == [(t, aggregate(DAILY, fn, window, t)) for t, _ in DAILY]
