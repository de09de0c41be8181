"""The value a KPI is judged by: `fn` over the window ending at a moment (MANIFEST.md `aggregate`). Pure.

The functions come from scorecards.aggregations, the one list of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from scorecards.aggregations import AGGREGATIONS, LAST


def aggregate(
    points: Sequence[tuple[datetime, float]], fn: str, window: timedelta | None, at: datetime
) -> float | None:
    """`fn` over the points in (at - window, at]; without a window only the last point counts."""
    if window is None:
        values = [v for t, v in points if t <= at][-1:]
    else:
        values = [v for t, v in points if at - window < t <= at]
    return AGGREGATIONS[fn].fn(values) if values else None


def rolling(
    points: Sequence[tuple[datetime, float]], fn: str, window: timedelta | None
) -> list[tuple[datetime, float]]:
    """The aggregated value at each point's time (points sorted by time): what a chart should compare
    with the thresholds. Linear for sum/avg/last; min/max rescan the window, which stays small."""
    if window is None or fn == LAST:
        return list(points)
    result, start, total = [], 0, 0.0
    for end, (at, value) in enumerate(points):
        total += value
        while points[start][0] <= at - window:
            total -= points[start][1]
            start += 1
        values = [v for _, v in points[start : end + 1]]
        running = total if fn == "sum" else total / len(values) if fn == "avg" else AGGREGATIONS[fn].fn(values)
        result.append((at, running))
    return result
