"""Hidden dependencies, the pure part: known lags are found, independent walks are not, p-values are Pearson's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dependencies.discovery import benjamini_hochberg, discover, strongest

DAYS = 180


def walks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Daily changes of `n` independent random walks (their levels are cumulative sums)."""
    return rng.normal(size=(n, DAYS))


@pytest.mark.parametrize("lag", [0, 3, 14, 21])
def test_it_finds_a_known_lag(lag):
    rng = np.random.default_rng(lag)
    changes = walks(rng, 40)
    changes[6, lag:] = 0.8 * changes[3, : DAYS - lag] + rng.normal(scale=0.6, size=DAYS - lag)
    changes[6, :lag] = rng.normal(size=lag)
    found = strongest(discover(changes, np.arange(40) % 4, max_lag=28, min_points=30), per_kpi=3)
    assert [(f.leader, f.follower, f.lag) for f in found] == [(3, 6, lag)]
    assert found[0].r > 0.6 and found[0].points == DAYS - lag and found[0].q < 1e-10


def test_a_known_lag_survives_gaps():
    rng = np.random.default_rng(5)
    changes = walks(rng, 30)
    changes[12, 14:] = changes[2, :-14] + rng.normal(scale=0.5, size=DAYS - 14)
    changes[2, rng.choice(DAYS, 40, replace=False)] = np.nan
    found = strongest(discover(changes, np.arange(30) % 3, max_lag=28, min_points=30), per_kpi=3)
    assert [(f.leader, f.follower, f.lag) for f in found] == [(2, 12, 14)]
    assert found[0].points < DAYS - 14


def test_pairs_within_a_team_are_not_tried():
    rng = np.random.default_rng(1)
    changes = walks(rng, 10)
    changes[1] = changes[0]
    assert discover(changes, np.zeros(10), max_lag=5, min_points=30) == []


def test_too_few_common_points_are_not_a_test():
    rng = np.random.default_rng(2)
    changes = walks(rng, 4)[:, :20]
    changes[1] = changes[0]
    assert discover(changes, np.arange(4), max_lag=3, min_points=30) == []


def test_coefficients_and_p_values_are_pearsons_on_complete_series():
    rng = np.random.default_rng(3)
    changes = walks(rng, 2)
    changes[1, 4:] = 0.5 * changes[0, :-4] + rng.normal(size=DAYS - 4)
    (hit,) = [f for f in discover(changes, np.array([0, 1]), max_lag=6, min_points=30) if f.lag == 4]
    r, p = stats.pearsonr(changes[0, :-4], changes[1, 4:])
    assert hit.r == pytest.approx(r, abs=1e-5) and hit.p == pytest.approx(p, rel=1e-3)


def test_independent_walks_suggest_no_more_than_the_correction_allows():
    """400 walks in 8 teams, 14 lags: 1.9 million tests, none related. At a false discovery rate of 5 % with no
    true relationship, BH makes any discovery at all with probability at most 5 %; over five seeds more than one
    run with a false discovery would be a failure of the correction."""
    runs_with_false = 0
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        found = discover(walks(rng, 400), np.arange(400) % 8, max_lag=14, min_points=30, alpha=0.05)
        runs_with_false += bool(found)
    assert runs_with_false <= 1


def test_benjamini_hochberg_matches_the_textbook():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert benjamini_hochberg(p, 4) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # Tests not handed over (larger p-values) still count.
    assert benjamini_hochberg(np.array([0.001]), 100) == pytest.approx([0.1])


def test_strongest_keeps_a_few_per_follower_and_one_lag_per_pair():
    rng = np.random.default_rng(9)
    changes = walks(rng, 12)
    for leader in range(4):
        changes[11, 2:] += (1 + leader) * changes[leader, :-2]
    found = strongest(discover(changes, np.arange(12), max_lag=4, min_points=30), per_kpi=2)
    assert sorted((f.leader, f.follower) for f in found) == [(2, 11), (3, 11)]
