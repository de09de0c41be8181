"""Escalation timing (SEMANTICS.md sections 3 and 5), pure: plain dataclasses in, times and steps out.

All arithmetic is on aware datetimes. Real elapsed time is UTC arithmetic; business hours are read in the
organization's zone, one local day at a time, so a DST change never shifts an opening or a wait.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from governance.hours import BusinessHours


@dataclass(frozen=True)
class Level:
    targets: tuple[str, ...]
    wait: timedelta
    business_hours: bool = False


@dataclass(frozen=True)
class Policy:
    """A policy as snapshotted when an episode opens; later edits never reach a running episode."""

    mitigation_due: timedelta
    ack_timeout: timedelta
    repeat: int
    levels: tuple[Level, ...]

    def as_json(self) -> dict:
        return {
            "mitigation_due": self.mitigation_due.total_seconds(),
            "ack_timeout": self.ack_timeout.total_seconds(),
            "repeat": self.repeat,
            "levels": [
                {"targets": list(lv.targets), "wait": lv.wait.total_seconds(), "business_hours": lv.business_hours}
                for lv in self.levels
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> Policy:
        return cls(
            mitigation_due=timedelta(seconds=data["mitigation_due"]),
            ack_timeout=timedelta(seconds=data["ack_timeout"]),
            repeat=data["repeat"],
            levels=tuple(
                Level(tuple(lv["targets"]), timedelta(seconds=lv["wait"]), lv["business_hours"])
                for lv in data["levels"]
            ),
        )


@dataclass(frozen=True)
class Position:
    """Where an episode's escalation stands: level 0 means no level notified yet (the owner's task runs)."""

    level: int = 0
    pass_: int = 0


@dataclass(frozen=True)
class Step:
    """What is due at `at`: notify `level` in `pass_` (1-based), or exhaust the escalation."""

    at: datetime
    level: int
    pass_: int
    exhausted: bool = False
    then: datetime | None = field(default=None)  # when the following step is due, if this one notifies


def notify_time(policy: Policy, level: int, due: datetime, hours: BusinessHours) -> datetime:
    """A business-hours level is notified at the next opening; others when due."""
    return hours.next_opening(due) if policy.levels[level - 1].business_hours else due


def wait_end(policy: Policy, level: int, notified: datetime, hours: BusinessHours) -> datetime:
    spec = policy.levels[level - 1]
    return hours.add(notified, spec.wait) if spec.business_hours else notified + spec.wait


def next_step(policy: Policy, position: Position, due: datetime, hours: BusinessHours) -> Step:
    """The step that follows `position` once `due` has come: the next level, the next pass, or exhaustion."""
    level, pass_ = position.level + 1, max(position.pass_, 1)
    if level > len(policy.levels):
        level, pass_ = 1, pass_ + 1
    if pass_ > policy.repeat + 1:
        return Step(due, position.level, position.pass_, exhausted=True)
    at = notify_time(policy, level, due, hours)
    return Step(at, level, pass_, then=wait_end(policy, level, at, hours))


def renotify(policy: Policy, position: Position, due: datetime, hours: BusinessHours) -> Step:
    """After an acknowledgement timed out: the same level again, its wait anew."""
    at = notify_time(policy, position.level, due, hours)
    return Step(at, position.level, position.pass_, then=wait_end(policy, position.level, at, hours))


def reminder(policy: Policy, level: int, acknowledged: datetime, hours: BusinessHours) -> datetime:
    """When an acknowledged `level` is notified again: `ack_timeout` after the acknowledgement, at the next opening
    for a business-hours level. Its wait then starts anew (renotify), so the next level comes no sooner than it was
    due before: the acknowledgement came after the level was notified."""
    return notify_time(policy, level, acknowledged.astimezone(UTC) + policy.ack_timeout, hours)


@dataclass(frozen=True)
class Planned:
    """One step of an episode that is never mitigated: a level notified or skipped, or the exhaustion.

    `due` is when the step fell due; `at` differs from it only when a business-hours level waits for the opening.
    """

    at: datetime
    due: datetime
    level: int
    pass_: int
    skipped: bool = False
    exhausted: bool = False


def walk(
    policy: Policy, position: Position, due: datetime, hours: BusinessHours, renotifying: bool = False
) -> Generator[tuple[datetime, Step], bool, None]:
    """An episode's escalation steps one after another from `position`, the next one falling due at `due`: the one
    loop both the sweep (escalations.engine.escalation.due_steps) and every plan or replay run.

    Yields (due, step); send back whether the step's level was empty (skipped): then the next step is due at once,
    else after the level's wait. Ends after the exhaustion step. `renotifying`: the first step repeats the level
    of `position` (an acknowledgement ran out)."""
    step = renotify(policy, position, due, hours) if renotifying else next_step(policy, position, due, hours)
    while True:
        skipped = yield due, step
        if step.exhausted:
            return
        position, due = Position(step.level, step.pass_), step.at if skipped else step.then
        step = next_step(policy, position, due, hours)


def plan(policy: Policy, opened: datetime, hours: BusinessHours, empty: frozenset[int] = frozenset()) -> list[Planned]:
    """Every escalation step of an episode opened at `opened` if no path is ever approved, as the sweep runs them.

    `empty` holds the (1-based) levels whose targets name nobody active: such a level is skipped and the next one is
    due at once, exactly as escalations.engine.sweeps does. A policy without levels has no steps.
    """
    if not policy.levels:
        return []
    # In UTC: adding a timedelta to a zone-aware datetime would move its wall clock, not real elapsed time.
    steps = walk(policy, Position(), opened.astimezone(UTC) + policy.mitigation_due, hours)
    due, step = next(steps)
    planned: list[Planned] = []
    while not step.exhausted:
        skipped = step.level in empty
        planned.append(Planned(step.at, due, step.level, step.pass_, skipped=skipped))
        due, step = steps.send(skipped)
    planned.append(Planned(step.at, due, step.level, step.pass_, exhausted=True))
    return planned


def replay(
    policy: Policy, opened: datetime, hours: BusinessHours, *, until: datetime, empty: frozenset[int] = frozenset()
) -> list[Planned]:
    """The steps an episode opened at `opened` went through before `until` (its path's approval, its resolution, or
    now): the sweep runs each step when it falls due, and none once the episode is mitigated or over."""
    return [step for step in plan(policy, opened, hours, empty) if step.at < until]
