"""Hidden dependencies, pure: which KPIs' daily changes follow another team's KPI's changes, and by how many days.

Plain arrays in, plain dataclasses out; no ORM (dependencies.suggestions reads the series and stores the result).

For every ordered pair (leader i, follower j) of KPIs in different teams and every lag L in 0..max_lag, the Pearson
correlation of i's change on day t with j's change on day t+L. All pairs of one lag come from one matrix product of
standardised changes, a block of leaders at a time, so memory stays at (chunk x KPIs) whatever the number of KPIs.

- Each window (leaders' days 0..T-L-1, followers' days L..T-1) is standardised over its own present points, so with
  no gaps the coefficient is exactly Pearson's; with gaps it is the sum of products over the days both have, divided
  by that count (each series standardised over all its days in the window): close to Pearson, and cheap.
- The p-value is Pearson's (t distribution with n-2 degrees of freedom, two-sided, scipy). Every (pair, lag) with
  at least `min_points` days in common counts as one test, and Benjamini-Hochberg controls the false discovery rate
  over all of them: trying 29 lags of 50 million pairs is paid for.
- To keep memory bounded only coefficients that could survive the correction are kept while the products run: at
  most `cap` discoveries are ever proposed, so nothing whose p-value exceeds alpha * cap / tests can be one. With
  gaps the exact number of tests is known only at the end; the filter uses the number there would be without gaps
  (an upper bound), which only makes it stricter.
- At lag 0 the direction is unknown: each unordered pair is tested once and reported with the lower index first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Found", "benjamini_hochberg", "discover", "strongest", "weekly_adjusted"]


@dataclass(frozen=True)
class Found:
    leader: int  # row index of the KPI whose change comes first
    follower: int
    lag: int  # days
    r: float
    points: int
    p: float
    q: float


def weekly_adjusted(changes: np.ndarray) -> np.ndarray:
    """Day-to-day changes less each row's mean change on that day of the week (columns 7 apart are the same
    weekday): a weekly rhythm shared by two KPIs (busy Mondays, quiet weekends) is not a dependency between them."""
    out = np.array(changes, dtype=np.float64)
    for first in range(7):
        block = out[:, first::7]
        present = np.isfinite(block)
        mean = np.where(present, block, 0.0).sum(axis=1, keepdims=True) / np.maximum(
            present.sum(axis=1, keepdims=True), 1
        )
        out[:, first::7] = block - mean
    return out


def _standardised(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """z-scores over each row's present points (0 where absent or where the row does not move)."""
    count = present.sum(axis=1, keepdims=True)
    safe = np.maximum(count, 1)
    mean = (values * present).sum(axis=1, keepdims=True) / safe
    centred = (values - mean) * present
    std = np.sqrt((centred**2).sum(axis=1, keepdims=True) / safe)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std > 1e-12, centred / std, 0.0)
    return z.astype(np.float32)


def _critical_r(p: float, points: int) -> float:
    """The smallest |r| whose two-sided p-value is below `p` with `points` points."""
    df = max(points - 2, 1)
    t = stats.t.isf(p / 2, df)
    return float(t / np.sqrt(df + t * t))


def p_values(r: np.ndarray, points: np.ndarray) -> np.ndarray:
    df = np.maximum(points - 2, 1).astype(np.float64)
    r = np.clip(np.abs(r.astype(np.float64)), 0, 1 - 1e-12)
    return 2 * stats.t.sf(r * np.sqrt(df / (1 - r * r)), df)


def benjamini_hochberg(p: np.ndarray, tests: int) -> np.ndarray:
    """q-values of the smallest p-values of `tests` tests (those not given are larger than every one given)."""
    if not len(p):
        return p
    order = np.argsort(p)
    ranked = p[order] * tests / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out


def discover(
    changes: np.ndarray,
    teams: np.ndarray,
    *,
    max_lag: int,
    min_points: int,
    alpha: float = 0.05,
    cap: int = 100_000,
    chunk: int = 512,
) -> list[Found]:
    """Every (leader, follower, lag) whose correlation survives Benjamini-Hochberg at `alpha`.

    `changes` is KPIs x days (day-to-day changes, NaN where a day has none); `teams` one label per row: pairs within
    a team are not tested."""
    changes = np.asarray(changes, dtype=np.float64)
    n, days = changes.shape
    present = np.isfinite(changes)
    values = np.where(present, changes, 0.0)
    teams = np.asarray(teams)
    most_tests = sum(n * (n - 1) // (2 if lag == 0 else 1) for lag in range(max_lag + 1) if days - lag >= min_points)
    if most_tests == 0:
        return []
    floor = _critical_r(min(1.0, alpha * cap / most_tests), days - 1)
    tests = 0
    kept: list[tuple[np.ndarray, ...]] = []
    for lag in range(max_lag + 1):
        if days - lag < min_points:
            break
        a_present, b_present = present[:, : days - lag], present[:, lag:]
        a = _standardised(values[:, : days - lag], a_present)
        b = _standardised(values[:, lag:], b_present)
        a_mask, b_mask = a_present.astype(np.float32), b_present.astype(np.float32).T
        b = np.ascontiguousarray(b.T)
        for start in range(0, n, chunk):
            rows = np.arange(start, min(start + chunk, n))
            counts = a_mask[rows] @ b_mask
            valid = (counts >= min_points) & (teams[rows, None] != teams[None, :])
            if lag == 0:
                valid &= rows[:, None] < np.arange(n)[None, :]
            tests += int(valid.sum())
            with np.errstate(divide="ignore", invalid="ignore"):
                r = (a[rows] @ b) / counts
            hit = valid & (np.abs(r) >= floor)
            i, j = np.nonzero(hit)
            if len(i):
                kept.append((rows[i], j, np.full(len(i), lag), r[i, j], counts[i, j].astype(np.int64)))
    if not kept:
        return []
    leader, follower, lag, r, points = (np.concatenate(parts) for parts in zip(*kept, strict=True))
    r = np.clip(r, -1.0, 1.0)
    p = p_values(r, points)
    q = benjamini_hochberg(p, tests)
    keep = q <= alpha
    return [
        Found(int(i), int(j), int(lg), float(c), int(m), float(pv), float(qv))
        for i, j, lg, c, m, pv, qv in zip(
            leader[keep], follower[keep], lag[keep], r[keep], points[keep], p[keep], q[keep], strict=True
        )
    ]


def strongest(found: list[Found], per_kpi: int) -> list[Found]:
    """Per pair (either direction) its strongest lag; then per follower (the KPI that would depend) its `per_kpi`
    strongest leaders."""
    best: dict[tuple[int, int], Found] = {}
    for f in found:
        pair = (min(f.leader, f.follower), max(f.leader, f.follower))
        if pair not in best or abs(f.r) > abs(best[pair].r):
            best[pair] = f
    by_follower: dict[int, list[Found]] = {}
    for f in sorted(best.values(), key=lambda f: (-abs(f.r), f.lag, f.leader, f.follower)):
        chosen = by_follower.setdefault(f.follower, [])
        if len(chosen) < per_kpi:
            chosen.append(f)
    return [f for chosen in by_follower.values() for f in chosen]
