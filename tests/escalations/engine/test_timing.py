from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from escalations.engine.timing import BusinessHours, Level, Policy, Position, next_step, renotify

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = BusinessHours.of(BERLIN, ["mon", "tue", "wed", "thu", "fri"], time(9), time(17))
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def berlin(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (berlin(2026, 11, 27, 10), berlin(2026, 11, 27, 10)),  # Friday, open
        (berlin(2026, 11, 27, 9), berlin(2026, 11, 27, 9)),  # the opening itself is open
        (berlin(2026, 11, 27, 17), berlin(2026, 11, 30, 9)),  # the closing is not: Monday
        (berlin(2026, 11, 28, 12), berlin(2026, 11, 30, 9)),  # Saturday
        (berlin(2026, 11, 30, 7), berlin(2026, 11, 30, 9)),  # Monday early
        (berlin(2026, 3, 28, 12), berlin(2026, 3, 30, 9)),  # the weekend DST starts (29 March)
    ],
)
def test_next_opening(at, expected):
    assert HOURS.next_opening(at) == expected


@pytest.mark.parametrize(
    ("at", "wait", "expected"),
    [
        (berlin(2026, 11, 27, 10), 2 * HOUR, berlin(2026, 11, 27, 12)),
        (berlin(2026, 11, 27, 16), 2 * HOUR, berlin(2026, 11, 30, 10)),  # Friday 16:00 + 2h = Monday 10:00
        (berlin(2026, 11, 28, 12), HOUR, berlin(2026, 11, 30, 10)),  # starts counting at Monday's opening
        (berlin(2026, 11, 27, 10), DAY, berlin(2026, 12, 2, 10)),  # 24 h of open time: Fri 7, Mon 8, Tue 8, Wed 1
        (berlin(2026, 11, 27, 16), HOUR, berlin(2026, 11, 30, 9)),  # ends exactly at closing: next opening
        (berlin(2026, 3, 27, 16), 2 * HOUR, berlin(2026, 3, 30, 10)),  # across the spring DST change
        (berlin(2026, 10, 23, 16), 2 * HOUR, berlin(2026, 10, 26, 10)),  # across the autumn DST change
    ],
)
def test_waits_count_only_business_time(at, wait, expected):
    assert HOURS.add(at, wait) == expected


def test_a_utc_input_gives_the_same_answer():
    at = berlin(2026, 11, 27, 16)
    assert HOURS.add(at.astimezone(UTC), 2 * HOUR) == berlin(2026, 11, 30, 10)


EXAMPLE = Policy(
    mitigation_due=2 * DAY,
    ack_timeout=4 * HOUR,
    repeat=0,
    levels=(Level(("team_lead",), DAY), Level(("role:executive",), 2 * DAY)),
)


def walk(policy: Policy, opened: datetime, hours=HOURS) -> list[tuple]:
    steps, position, due = [], Position(), opened + policy.mitigation_due
    while True:
        step = next_step(policy, position, due, hours)
        steps.append((step.at, step.level, step.pass_, step.exhausted))
        if step.exhausted:
            return steps
        position, due = Position(step.level, step.pass_), step.then


def test_the_worked_example_of_semantics_md():
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert walk(EXAMPLE, t0) == [
        (t0 + 2 * DAY, 1, 1, False),  # team lead
        (t0 + 3 * DAY, 2, 1, False),  # executives
        (t0 + 5 * DAY, 2, 1, True),  # exhausted
    ]


def test_repeat_runs_further_passes_from_level_one():
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    policy = Policy(EXAMPLE.mitigation_due, EXAMPLE.ack_timeout, 1, EXAMPLE.levels)
    assert [s[1:] for s in walk(policy, t0)] == [
        (1, 1, False),
        (2, 1, False),
        (1, 2, False),
        (2, 2, False),
        (2, 2, True),
    ]
    assert walk(policy, t0)[-1][0] == t0 + 2 * DAY + 2 * (DAY + 2 * DAY)


def test_a_business_hours_level_waits_for_the_opening_and_counts_open_time_only():
    policy = Policy(DAY, HOUR, 0, (Level(("team_lead",), 2 * HOUR, business_hours=True), Level(("owner",), HOUR)))
    opened = berlin(2026, 11, 26, 20)  # Thursday evening: mitigation due Friday 20:00
    assert walk(policy, opened) == [
        (berlin(2026, 11, 30, 9), 1, 1, False),  # notified at Monday's opening, not at night or on the weekend
        (berlin(2026, 11, 30, 11), 2, 1, False),  # two hours of open time later
        (berlin(2026, 11, 30, 12), 2, 1, True),
    ]


def test_after_an_acknowledgement_the_same_level_is_notified_again_and_waits_anew():
    due = datetime(2026, 11, 5, 12, tzinfo=UTC)
    step = renotify(EXAMPLE, Position(1, 1), due, HOURS)
    assert (step.at, step.level, step.pass_, step.then) == (due, 1, 1, due + DAY)


def test_a_policy_snapshot_round_trips():
    assert Policy.from_json(EXAMPLE.as_json()) == EXAMPLE
