from __future__ import annotations

from datetime import date

import pytest

from scorecards.evaluation.thresholds import ThresholdError, Thresholds, parse_thresholds, raw_status, settings_errors


@pytest.mark.parametrize(
    ("direction", "warning", "critical", "value", "expected"),
    [
        ("increase", 1000, 800, 1200, "on_track"),
        ("increase", 1000, 800, 1000, "on_track"),  # on the warning threshold: the better status
        ("increase", 1000, 800, 999.99, "at_risk"),
        ("increase", 1000, 800, 800, "at_risk"),  # on the critical threshold: the better status
        ("increase", 1000, 800, 799, "off_track"),
        ("decrease", 5, 8, 4, "on_track"),
        ("decrease", 5, 8, 5, "on_track"),
        ("decrease", 5, 8, 5.1, "at_risk"),
        ("decrease", 5, 8, 8, "at_risk"),
        ("decrease", 5, 8, 8.01, "off_track"),
        ("range", (40, 60), (30, 70), 40, "on_track"),
        ("range", (40, 60), (30, 70), 60, "on_track"),
        ("range", (40, 60), (30, 70), 39, "at_risk"),
        ("range", (40, 60), (30, 70), 70, "at_risk"),
        ("range", (40, 60), (30, 70), 29.9, "off_track"),
        ("range", (40, 60), (30, 70), 71, "off_track"),
    ],
)
def test_raw_status(direction, warning, critical, value, expected):
    assert raw_status(value, Thresholds(direction, warning, critical)) == expected


def test_relative_thresholds_resolve_against_the_reference():
    spec = parse_thresholds("increase", {"warning": "95%", "critical": "80%"}, has_target=True)
    t = spec.resolve(1200)
    assert (t.warning, t.critical) == (1140, 960)
    assert raw_status(1140, t) == "on_track" and raw_status(1000, t) == "at_risk"


@pytest.mark.parametrize(
    ("direction", "raw", "message"),
    [
        (
            "increase",
            {"warning": 800, "critical": 1000},
            "warning must be above critical for direction increase",
        ),
        ("increase", {"warning": 800, "critical": 800}, "warning must be above critical"),
        ("decrease", {"warning": 9, "critical": 8}, "warning must be below critical for direction decrease"),
        (
            "range",
            {"warning": [40, 60], "critical": [45, 70]},
            "critical range must contain the warning range",
        ),
        ("range", {"warning": [60, 40], "critical": [30, 70]}, "low must not be above its high"),
        ("range", {"warning": 40, "critical": [30, 70]}, "pair"),
        ("increase", {"warning": "95%", "critical": 800}, "both be absolute or both be percentages"),
        ("increase", {"warning": "lots", "critical": 800}, "number or a percentage"),
        ("increase", {"warning": True, "critical": 0}, "number or a percentage"),
        ("increase", {"warning": float("nan"), "critical": 0}, "finite"),
        ("increase", {"warning": 1}, "critical is required"),
        ("increase", {"warning": 2, "critical": 1, "danger": 0}, "unknown field 'danger'"),
        ("sideways", {"warning": 2, "critical": 1}, "unknown direction"),
        ("increase", [1, 2], "mapping"),
    ],
)
def test_it_refuses_bad_thresholds_with_a_clear_message(direction, raw, message):
    with pytest.raises(ThresholdError, match=message):
        parse_thresholds(direction, raw, has_target=True)


def test_percentages_need_a_target():
    with pytest.raises(ThresholdError, match="set a target"):
        parse_thresholds("increase", {"warning": "95%", "critical": "80%"}, has_target=False)


GOOD = {"warning": 90, "critical": 80}
D1, D2 = date(2026, 1, 1), date(2026, 6, 30)


@pytest.mark.parametrize(
    ("thresholds", "target", "target_by", "baseline", "baseline_at", "expected"),
    [
        (GOOD, 100, None, None, None, set()),
        (GOOD, 100, D2, 50, D1, set()),
        ({"warning": 80, "critical": 90}, None, None, None, None, {"warning"}),
        ({"warning": "95%", "critical": "90%"}, None, None, None, None, {"warning"}),  # relative needs a target
        (None, None, D2, None, None, {"target_value"}),  # thresholds not given yet: the rest is still checked
        (GOOD, 100, D2, 50, None, {"baseline_at"}),
        (GOOD, 100, D1, 50, D2, {"target_by"}),  # the baseline after the target date
        (GOOD, 100, None, 50, D1, {"target_by"}),  # a baseline without a dated target
    ],
)
def test_settings_errors_name_the_field_at_fault(thresholds, target, target_by, baseline, baseline_at, expected):
    errors = settings_errors(
        "increase",
        thresholds,
        target_value=target,
        target_by=target_by,
        baseline_value=baseline,
        baseline_at=baseline_at,
    )
    assert set(errors) == expected
