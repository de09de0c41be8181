from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorecards.evaluation.evaluator import Decision, Rule, State, Surge, evaluate, lookback, pace
from scorecards.evaluation.thresholds import ThresholdError

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 30, 9, tzinfo=UTC)  # 10:00 in Berlin
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
INC = {"warning": 1000, "critical": 800}
DEC = {"warning": 5, "critical": 8}
RNG = {"warning": [40, 60], "critical": [30, 70]}
BASE = Rule(
    direction="increase",
    thresholds=INC,
    target_value=None,
    target_by=None,
    baseline_value=None,
    baseline_at=None,
    aggregate_fn="last",
    aggregate_window=None,
    stale_after=3 * D,
    pending_for=2 * H,
    keep_for=1 * H,
    unit="leads",
    tz=BERLIN,
)
ON, AT, OFF, STALE, NO_DATA = "on_track", "at_risk", "off_track", "stale", "no_data"


def make_rule(**changes) -> Rule:
    return replace(BASE, **changes)


def once(rule: Rule, value: float, state: State | None = None, now: datetime = T0) -> Decision:
    """One evaluation with a single fresh point at `now`."""
    return evaluate(rule, state or State(ON, now - 30 * D), [(now, value)], now, now)


def carry(decision: Decision) -> State:
    return State(
        decision.status, decision.status_since, decision.pending_status, decision.pending_since, decision.last_surge_at
    )


def run(
    rule: Rule,
    steps: list[tuple[float, float | None]],
    status: str = ON,
    history: list[tuple[datetime, float]] | None = None,
) -> list[Decision]:
    """Evaluates at T0 + minutes for each step; a value adds a point at that moment, None only evaluates."""
    state = State(status, T0 - 30 * D if status != NO_DATA else None)
    points = list(history or [])
    decisions = []
    for minutes, value in steps:
        now = T0 + minutes * M
        if value is not None:
            points.append((now, value))
        decision = evaluate(rule, state, points, points[-1][0] if points else None, now)
        decisions.append(decision)
        state = carry(decision)
    return decisions


# --- raw status -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "thresholds", "value", "expected"),
    [
        ("increase", INC, 1210, ON),
        ("increase", INC, 1000, ON),  # exactly on warning: the better status
        ("increase", INC, 999.5, AT),
        ("increase", INC, 800, AT),  # exactly on critical: the better status
        ("increase", INC, 799.9, OFF),
        ("decrease", DEC, 4, ON),
        ("decrease", DEC, 5, ON),
        ("decrease", DEC, 5.01, AT),
        ("decrease", DEC, 8, AT),
        ("decrease", DEC, 8.01, OFF),
        ("range", RNG, 40, ON),
        ("range", RNG, 60, ON),
        ("range", RNG, 39.9, AT),
        ("range", RNG, 60.1, AT),
        ("range", RNG, 30, AT),
        ("range", RNG, 70, AT),
        ("range", RNG, 29.9, OFF),
        ("range", RNG, 70.1, OFF),
    ],
)
def test_it_takes_the_raw_status_from_the_thresholds(direction, thresholds, value, expected):
    decision = once(make_rule(direction=direction, thresholds=thresholds), value)
    assert decision.raw == expected
    assert decision.value == value


@pytest.mark.parametrize(
    ("direction", "thresholds", "value", "reason"),
    [
        ("increase", INC, 1210, "1,210 leads >= warning 1,000"),
        ("increase", INC, 940, "940 leads < warning 1,000"),
        ("increase", INC, 700, "700 leads < critical 800"),
        ("decrease", DEC, 4.5, "4.5 leads <= warning 5"),
        ("decrease", DEC, 6, "6 leads > warning 5"),
        ("decrease", DEC, 9.25, "9.25 leads > critical 8"),
        ("range", RNG, 50, "50 leads inside the warning band 40-60"),
        ("range", RNG, 65, "65 leads outside the warning band 40-60"),
        ("range", RNG, 75, "75 leads outside the critical band 30-70"),
    ],
)
def test_its_reason_has_the_numbers(direction, thresholds, value, reason):
    assert once(make_rule(direction=direction, thresholds=thresholds, pending_for=timedelta(0)), value).reason == reason


def test_it_reports_the_absolute_thresholds_used():
    assert once(make_rule(), 900).thresholds == {"warning": 1000, "critical": 800}
    assert once(make_rule(direction="range", thresholds=RNG), 50).thresholds == {
        "warning": [40, 60],
        "critical": [30, 70],
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1140, ON), (1139.9, AT), (960, AT), (959.9, OFF)],
)
def test_relative_thresholds_resolve_against_the_target(value, expected):
    rule = make_rule(thresholds={"warning": "95%", "critical": "80%"}, target_value=1200)
    decision = once(rule, value)
    assert decision.raw == expected
    assert decision.thresholds == {"warning": 1140, "critical": 960}
    assert "of target 1,200)" in decision.reason


def test_relative_thresholds_without_a_target_are_an_error():
    with pytest.raises(ThresholdError):
        once(make_rule(thresholds={"warning": "95%", "critical": "80%"}), 1000)


SPRING = make_rule(target_value=743, target_by=date(2026, 4, 1), baseline_value=0, baseline_at=date(2026, 3, 1))
AUTUMN = make_rule(target_value=745, target_by=date(2026, 11, 1), baseline_value=0, baseline_at=date(2026, 10, 1))


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("rule", "now", "expected"),
    [
        # March 2026 in Berlin has 743 hours (clocks go forward on the 29th), so the pace grows 1 per hour.
        (SPRING, berlin(2026, 3, 1), 0),
        (SPRING, berlin(2026, 3, 29), 28 * 24),
        (SPRING, berlin(2026, 3, 30), 29 * 24 - 1),  # the 29th had 23 hours
        (SPRING, berlin(2026, 4, 1), 743),
        (SPRING, berlin(2026, 2, 1), 0),  # clamped before the baseline
        (SPRING, berlin(2026, 6, 1), 743),  # clamped after the target date
        # October 2026 has 745 hours (clocks go back on the 25th).
        (AUTUMN, berlin(2026, 10, 25), 24 * 24),
        (AUTUMN, berlin(2026, 10, 26), 25 * 24 + 1),
        (AUTUMN, berlin(2026, 11, 1), 745),
        (replace(SPRING, baseline_value=None), berlin(2026, 3, 15), 743),  # no baseline: the target
        (make_rule(target_value=1200), berlin(2026, 3, 15), 1200),
    ],
)
def test_the_pace_of_a_dated_target_follows_real_time_in_the_organization_zone(rule, now, expected):
    assert pace(rule, now) == pytest.approx(expected)


@pytest.mark.parametrize(("value", "expected"), [(695, ON), (694.9, AT), (625.5, AT), (625.4, OFF)])
def test_relative_thresholds_resolve_against_the_pace(value, expected):
    rule = replace(SPRING, thresholds={"warning": "100%", "critical": "90%"})
    decision = once(rule, value, now=berlin(2026, 3, 30))
    assert decision.raw == expected
    assert decision.thresholds == {"warning": pytest.approx(695), "critical": pytest.approx(625.5)}
    assert "of pace 695)" in decision.reason


DAILY = [(T0 - k * D, float(v)) for k, v in zip(range(4, -1, -1), [10, 20, 30, 40, 50], strict=True)]


@pytest.mark.parametrize(
    ("fn", "window", "value", "subject"),
    [
        ("last", None, 50, "50 leads"),
        ("last", 2 * D, 50, "50 leads"),
        ("sum", 2 * D, 90, "2-day sum 90 leads"),  # (now - 2d, now]: the point exactly 2 days back is outside
        ("sum", 7 * D, 150, "7-day sum 150 leads"),
        ("avg", 3 * D, 40, "3-day average 40 leads"),
        ("min", 3 * D, 30, "3-day min 30 leads"),
        ("max", 7 * D, 50, "7-day max 50 leads"),
        ("sum", 12 * H, 50, "12h sum 50 leads"),
    ],
)
def test_it_evaluates_the_aggregate_over_the_window_ending_now(fn, window, value, subject):
    rule = make_rule(aggregate_fn=fn, aggregate_window=window, thresholds={"warning": 10, "critical": 5})
    decision = evaluate(rule, State(ON, None), DAILY, DAILY[-1][0], T0)
    assert decision.value == value
    assert decision.reason == f"{subject} >= warning 10"


@pytest.mark.parametrize(("status", "expected"), [(NO_DATA, NO_DATA), (ON, STALE)])
def test_a_newest_measurement_dated_after_now_with_nothing_before_is_not_data_yet(status, expected):
    rule = make_rule(pending_for=timedelta(0))
    decision = evaluate(rule, State(status, None), [(T0 + H, 1100.0)], T0 + H, T0)
    assert (decision.status, decision.value) == (expected, None)


@pytest.mark.parametrize("margin", ["-5", "lots", "5 leads"])
def test_a_malformed_recovery_margin_is_an_error(margin):
    with pytest.raises(ThresholdError):
        once(make_rule(recovery_margin=margin), 1100, State(AT, None))


def test_it_ignores_points_after_now():
    points = [(T0 - H, 1100.0), (T0 + H, 500.0)]
    decision = evaluate(make_rule(), State(ON, None), points, T0 + H, T0)
    assert (decision.raw, decision.value) == (ON, 1100)


# --- no data and stale ----------------------------------------------------------------------------------------


def test_it_has_no_data_before_the_first_measurement():
    decision = evaluate(make_rule(), State(NO_DATA, None), [], None, T0)
    assert (decision.status, decision.raw, decision.reason, decision.changed) == (
        NO_DATA,
        NO_DATA,
        "no measurement yet",
        False,
    )
    assert decision.thresholds == {}


@pytest.mark.parametrize(
    ("age", "expected"),
    [(3 * D - M, ON), (3 * D, ON), (3 * D + timedelta(seconds=1), STALE), (4 * D, STALE)],
)
def test_it_is_stale_only_when_the_newest_data_is_older_than_stale_after(age, expected):
    newest = T0 - age
    decision = evaluate(make_rule(), State(ON, None), [(newest, 1100.0)], newest, T0)
    assert decision.raw == expected


def test_its_stale_reason_gives_the_age():
    newest = T0 - 4 * D
    decision = evaluate(make_rule(pending_for=timedelta(0)), State(ON, None), [(newest, 1100.0)], newest, T0)
    assert (decision.status, decision.reason, decision.thresholds) == (STALE, "newest data 4d old (stale after 3d)", {})


def test_an_age_just_past_stale_after_does_not_read_as_equal_to_it():
    newest = T0 - 3 * D - 5 * M
    decision = evaluate(make_rule(pending_for=timedelta(0)), State(ON, None), [(newest, 1100.0)], newest, T0)
    assert decision.reason == "newest data 3d 5m old (stale after 3d)"


def test_an_empty_aggregate_window_is_stale_even_when_the_data_is_fresh():
    rule = make_rule(aggregate_fn="sum", aggregate_window=7 * D, stale_after=30 * D, pending_for=timedelta(0))
    newest = T0 - 8 * D
    decision = evaluate(rule, State(ON, None), [(newest, 1100.0)], newest, T0)
    assert (decision.status, decision.value) == (STALE, None)
    assert decision.reason == "no measurement in the 7-day window (newest data 8d old)"


# --- the official status over time ----------------------------------------------------------------------------

MARGIN_2PCT = {"recovery_margin": "2%"}


@pytest.mark.parametrize(
    ("changes", "start", "steps", "expected"),
    [
        pytest.param(
            {}, ON, [(0, 900), (60, 900), (119, 900), (120, 900)], [ON, ON, ON, AT], id="breach-held-for-pending_for"
        ),
        pytest.param(
            {},
            ON,
            [(0, 900), (60, 900), (90, 1100), (100, 900), (219, 900), (220, 900)],
            [ON, ON, ON, ON, ON, AT],
            id="one-good-evaluation-restarts-the-wait",
        ),
        pytest.param(
            {}, ON, [(0, 900), (60, 700), (120, 700)], [ON, ON, OFF], id="worse-while-pending-keeps-the-clock"
        ),
        pytest.param(
            {}, ON, [(0, 700), (60, 900), (120, 900)], [ON, ON, AT], id="easing-breach-keeps-the-clock-enters-raw"
        ),
        pytest.param(
            {"pending_for": timedelta(0)},
            ON,
            [(0, 900), (10, 700), (20, 1100), (79, 1100), (80, 1100)],
            [AT, OFF, OFF, OFF, ON],  # recovery still waits keep_for
            id="pending_for-0-changes-at-once",
        ),
        pytest.param({}, NO_DATA, [(0, 700)], [OFF], id="first-data-leaves-no_data-at-once"),
        pytest.param({}, NO_DATA, [(0, 1100), (10, 900)], [ON, ON], id="first-data-then-pending-as-usual"),
        pytest.param(
            MARGIN_2PCT,
            AT,
            [(0, 1010), (10, 1020), (40, 1030), (69, 1025), (70, 1025)],
            [AT, AT, AT, AT, ON],
            id="recovery-needs-the-margin-and-keep_for",
        ),
        pytest.param(
            MARGIN_2PCT,
            AT,
            [(0, 1030), (30, 1010), (60, 1030), (119, 1030), (120, 1030)],
            [AT, AT, AT, AT, ON],
            id="inside-the-margin-cancels-the-recovery",
        ),
        pytest.param(
            {},
            AT,
            [(0, 1030), (30, 990), (60, 1030), (119, 1030), (120, 1030)],
            [AT, AT, AT, AT, ON],
            id="a-new-breach-cancels-the-recovery",
        ),
        pytest.param(
            {},
            AT,
            [(0, 1100), (30, 700), (149, 700), (150, 700)],
            [AT, AT, AT, OFF],
            id="a-worse-breach-during-keep_for-waits-pending_for",
        ),
        pytest.param(
            {}, OFF, [(0, 900), (30, 1100), (60, 1100)], [OFF, OFF, ON], id="recovery-through-at_risk-keeps-the-clock"
        ),
        pytest.param(
            {"recovery_margin": "5"},
            OFF,
            [(0, 804.9), (10, 805), (70, 805)],
            [OFF, OFF, AT],
            id="absolute-margin-on-critical",
        ),
        pytest.param(
            {"recovery_margin": "5"},
            OFF,
            [(0, 1003), (60, 1003)],
            [OFF, AT],
            id="off_track-to-on_track-must-beat-warning-by-the-margin",
        ),
        pytest.param(
            {"recovery_margin": "5", "direction": "range", "thresholds": RNG},
            AT,
            [(0, 44), (10, 45), (20, 56), (30, 55), (89, 55), (90, 55)],
            [AT, AT, AT, AT, AT, ON],
            id="range-margin-from-the-nearest-edge",
        ),
        pytest.param(
            {"recovery_margin": "10%", "direction": "decrease", "thresholds": DEC},
            AT,
            [(0, 4.6), (10, 4.5), (70, 4.5)],
            [AT, AT, ON],
            id="decrease-margin-in-percent",
        ),
        pytest.param(
            {"stale_after": H},
            ON,
            [(0, 1100), (60, None), (61, None), (180, None), (181, None), (200, 1100), (319, 1100), (320, 1100)],
            [ON, ON, ON, ON, STALE, STALE, STALE, ON],
            id="stale-enters-through-pending-and-data-returns",
        ),
        pytest.param(
            {"stale_after": H, "recovery_margin": "50%"},
            OFF,
            [(0, 700), (61, None), (181, None), (200, 1005), (320, 1005)],
            [OFF, OFF, STALE, STALE, ON],
            id="stale-to-on_track-is-a-normal-change-without-margin",
        ),
        pytest.param(
            {"stale_after": H},
            STALE,
            [(0, 1100), (60, 900), (120, 900)],
            [STALE, STALE, AT],
            id="leaving-stale-counts-from-the-first-fresh-evaluation",
        ),
    ],
)
def test_the_official_status_over_time(changes, start, steps, expected):
    assert [d.status for d in run(make_rule(**changes), steps, start)] == expected


def test_a_change_is_reported_once_with_its_moment():
    decisions = run(make_rule(), [(0, 900), (60, 900), (120, 900), (180, 900)])
    assert [d.changed for d in decisions] == [False, False, True, False]
    changed = decisions[2]
    assert (changed.old_status, changed.status, changed.status_since) == (ON, AT, T0 + 2 * H)
    assert (changed.pending_status, changed.pending_since) == ("", None)
    assert decisions[3].status_since == T0 + 2 * H


def test_worse_while_pending_keeps_the_first_breach_as_pending_since():
    decisions = run(make_rule(), [(0, 900), (60, 700)])
    assert [(d.pending_status, d.pending_since) for d in decisions] == [(AT, T0), (OFF, T0)]


def test_a_raw_status_equal_to_the_official_clears_the_candidate():
    decision = run(make_rule(), [(0, 900), (30, 1100)])[-1]
    assert (decision.status, decision.pending_status, decision.pending_since) == (ON, "", None)


def test_its_pending_reason_says_since_when_and_how_long():
    rule = make_rule(aggregate_fn="sum", aggregate_window=7 * D)
    history = [(T0 - 2 * H, 940.0)]
    decisions = run(rule, [(0, None), (60, None)], history=history)
    assert decisions[-1].reason == "7-day sum 940 leads < warning 1,000 since 10:00; pending 1h of 2h"


def test_its_pending_reason_names_the_day_when_not_today():
    rule = make_rule(pending_for=2 * D)
    decisions = run(rule, [(0, 900), (24 * 60 + 5, 900)])
    assert decisions[-1].reason == "900 leads < warning 1,000 since 30 Nov 10:00; pending 1d 5m of 2d"


def test_its_reason_shows_the_recovery_margin_it_needs():
    decision = run(make_rule(**MARGIN_2PCT), [(0, 1010)], AT)[0]
    assert decision.raw == AT
    assert decision.reason == "1,010 leads >= warning 1,000, inside the recovery margin 2% (needs >= 1,020)"


# --- surge ----------------------------------------------------------------------------------------------------

SURGE = {"surge_change": "30%", "surge_window": 7 * D}


@pytest.mark.parametrize(
    ("before", "after", "surge"),
    [
        (100, 140, Surge(700, 980, 0.4)),
        (100, 130, Surge(700, 910, 0.3)),  # exactly the change: a surge
        (100, 129, None),
        (100, 70, Surge(700, 490, -0.3)),
        (0, 140, None),  # no previous value to compare with
    ],
)
def test_it_signals_a_surge_against_the_previous_window(before, after, surge):
    points = [(T0 - k * D, float(before if k >= 7 else after)) for k in range(13, -1, -1)]
    decision = evaluate(make_rule(**SURGE), State(ON, None), points, T0, T0)
    assert decision.surge == (surge and Surge(surge.previous, surge.current, pytest.approx(surge.change)))
    assert decision.last_surge_at == (T0 if surge else None)
    if surge:
        assert f"({before * 7} -> {after * 7} leads)" in decision.reason


def test_a_surge_is_signalled_at_most_once_per_window():
    # Growing 10% a day: every 7-day sum is 95% above the previous one.
    history = [(T0 - k * D, 1.1 ** (-k)) for k in range(20, 0, -1)]
    steps = [(day * 24 * 60, 1.1**day) for day in range(15)]
    decisions = run(make_rule(**SURGE, thresholds={"warning": 0, "critical": -1}), steps, history=history)
    assert [day for day, d in enumerate(decisions) if d.surge] == [0, 7, 14]
    assert all(d.status == ON for d in decisions)  # independent of the status


# --- forecast -------------------------------------------------------------------------------------------------

FORECAST = {"forecast": True, "target_value": 1200, "target_by": date(2026, 12, 31)}


def trend(slope_per_day: float, days: int = 28, last: float = 1100) -> list[tuple[datetime, float]]:
    return [(T0 - k * D, last - slope_per_day * k) for k in range(days - 1, -1, -1)]


def test_a_projected_miss_of_a_dated_target_is_at_risk():
    points = trend(2)
    decision = evaluate(make_rule(**FORECAST, pending_for=timedelta(0)), State(ON, None), points, T0, T0)
    assert (decision.raw, decision.status) == (AT, AT)
    # 1,100 now plus 2 a day for the 30 days 14 hours to 31 Dec midnight in Berlin.
    assert decision.reason == ("1,100 leads >= warning 1,000; projected 1,161 leads by 31 Dec, short of target 1,200")


@pytest.mark.parametrize(
    ("changes", "points"),
    [
        pytest.param({}, trend(10), id="on-pace"),
        pytest.param({}, trend(2, days=4), id="fewer-than-5-points"),
        pytest.param({"target_by": date(2026, 11, 30)}, trend(2), id="target-date-passed"),
        pytest.param({"forecast": False}, trend(2), id="forecast-off"),
    ],
)
def test_it_does_not_flag_without_a_projected_miss(changes, points):
    rule = make_rule(**{**FORECAST, **changes})
    assert evaluate(rule, State(ON, None), points, T0, T0).raw == ON


@pytest.mark.parametrize(
    ("direction", "thresholds", "slope", "text"),
    [
        ("decrease", {"warning": 1200, "critical": 1300}, 2, "projected 1,161 leads by 31 Dec, above target 1,100"),
        (
            "range",
            {"warning": ["95%", "105%"], "critical": ["90%", "110%"]},
            -5,
            "projected 947.1 leads by 31 Dec, outside the warning band 1,045-1,155",
        ),
    ],
)
def test_the_forecast_knows_the_direction(direction, thresholds, slope, text):
    rule = make_rule(**{**FORECAST, "target_value": 1100}, direction=direction, thresholds=thresholds)
    decision = evaluate(rule, State(ON, None), trend(slope), T0, T0)
    assert decision.raw == AT
    assert text in decision.reason


def test_the_forecast_projects_the_aggregated_value():
    # 7-day sums of a daily 150 that grows 1 a day: 1,050 + 7 a day is on pace for 1,200 only with the sums.
    points = [(T0 - k * D, 150.0 - k) for k in range(34, -1, -1)]
    rule = make_rule(**FORECAST, aggregate_fn="sum", aggregate_window=7 * D)
    decision = evaluate(rule, State(ON, None), points, T0, T0)
    assert (decision.value, decision.raw) == (1029, ON)


# --- lookback -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"stale_after": H}, D),  # never less than a day
        ({}, 3 * D),  # without a window the newest point may be up to stale_after old
        ({"aggregate_fn": "sum", "aggregate_window": 7 * D}, 7 * D),
        ({**SURGE, "stale_after": H}, 14 * D),
        ({**FORECAST, "aggregate_fn": "sum", "aggregate_window": 7 * D}, 35 * D),
    ],
)
def test_lookback_covers_what_evaluate_reads(changes, expected):
    assert lookback(make_rule(**changes)) == expected


# --- properties -----------------------------------------------------------------------------------------------

GOOD_VALUES = {
    "increase": (INC, st.floats(1000, 1e6), ["last", "sum", "avg", "min", "max"]),
    "decrease": (DEC, st.floats(-1e6, 5), ["last", "avg", "min", "max"]),
    "range": (RNG, st.floats(40, 60), ["last", "avg", "min", "max"]),
}
WINDOWS = st.sampled_from([None, H, D, 7 * D])


@st.composite
def never_breaching(draw):
    direction = draw(st.sampled_from(sorted(GOOD_VALUES)))
    thresholds, values, fns = GOOD_VALUES[direction]
    rule = make_rule(
        direction=direction,
        thresholds=thresholds,
        aggregate_fn=draw(st.sampled_from(fns)),
        aggregate_window=draw(WINDOWS),
        pending_for=draw(st.integers(0, 300)) * M,
        **SURGE,
    )
    steps, minute = [], 0
    for value in draw(st.lists(values, min_size=1, max_size=30)):
        minute += draw(st.integers(1, 600))
        steps.append((minute, value))
    return rule, steps


@settings(max_examples=150, deadline=None)
@given(never_breaching())
def test_values_that_never_breach_never_change_on_track(case):
    rule, steps = case
    assert all(d.status == ON and not d.changed for d in run(rule, steps))


@st.composite
def short_breach(draw):
    pending = draw(st.integers(1, 600))
    good, bad = st.floats(1000, 1e6), st.floats(-1e6, 999.99)
    steps, minute = [], 0
    for value in draw(st.lists(good, max_size=5)):
        minute += draw(st.integers(1, 600))
        steps.append((minute, value))
    first = minute + 1
    offsets = sorted({0, *draw(st.lists(st.integers(0, pending - 1), max_size=9))})
    for offset in offsets:
        minute = first + offset
        steps.append((minute, draw(bad)))
    minute += draw(st.integers(1, 600))
    steps.append((minute, draw(good)))
    return make_rule(pending_for=pending * M), steps


@settings(max_examples=150, deadline=None)
@given(short_breach())
def test_a_breach_shorter_than_pending_for_never_changes_on_track(case):
    rule, steps = case
    assert all(d.status == ON for d in run(rule, steps))


STATUSES = [ON, AT, OFF, STALE, NO_DATA]


@st.composite
def anything(draw):
    direction = draw(st.sampled_from(sorted(GOOD_VALUES)))
    rule = make_rule(
        direction=direction,
        thresholds=GOOD_VALUES[direction][0],
        aggregate_fn=draw(st.sampled_from(["last", "sum", "avg", "min", "max"])),
        aggregate_window=draw(WINDOWS),
        pending_for=draw(st.integers(0, 300)) * M,
        keep_for=draw(st.integers(0, 300)) * M,
        recovery_margin=draw(st.sampled_from(["", "5", "2%"])),
        forecast=draw(st.booleans()),
        target_value=1200,
        target_by=date(2027, 3, 31),
        **SURGE,
    )
    offsets = sorted(draw(st.lists(st.integers(-40 * 24 * 60, 60), max_size=40, unique=True)))
    points = [(T0 + m * M, draw(st.floats(-1e6, 1e6))) for m in offsets]
    pending = draw(st.sampled_from(["", *STATUSES]))
    state = State(
        draw(st.sampled_from(STATUSES)),
        T0 - D,
        pending,
        T0 - draw(st.integers(0, 600)) * M if pending else None,
        draw(st.sampled_from([None, T0 - D, T0 - 10 * D])),
    )
    newest = points[-1][0] if points else None
    return rule, state, points, newest


@settings(max_examples=200, deadline=None)
@given(anything())
def test_evaluate_is_deterministic(case):
    rule, state, points, newest = case
    first = evaluate(rule, state, points, newest, T0)
    assert evaluate(rule, state, list(points), newest, T0) == first
    json.dumps(first.thresholds)
    assert first.changed == (first.status != state.status)
    if first.changed:
        assert (first.status_since, first.pending_status, first.pending_since) == (T0, "", None)
