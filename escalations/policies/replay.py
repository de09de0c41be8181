"""Policy replay: a draft policy run over the organization's real episodes of the last N days, side by side with the
policy each episode actually followed (its snapshot), before the draft is saved.

Both columns come from escalations.engine.timing.replay, the sweep's own step loop, with the organization's business
hours and today's members: who would have been told when, tasks and notifications per person and week, which
episodes would have run out. An episode escalates until its first approved path, its resolution, or now.

What the replay leaves out, on purpose: acknowledgements ("I am on it") and overdue actions. Both are people's
reactions to what they were told, which another policy would have changed; the replay shows the policy's own
reach. For episodes without either, the "as run" column is what the sweep did, to the second
(tests/escalations/policies/test_replay.py)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

from django.utils import timezone

from escalations.engine.resolver import Resolver, admins, four_eyes
from escalations.engine.timing import Planned, Policy, replay
from escalations.models import MitigationPath, Workstream
from governance.hours import business_hours
from governance.models import Organization


@dataclass
class Column:
    """One policy's run of one episode."""

    steps: list[Planned]
    people: dict[int, list[str]]  # step index -> names notified

    @property
    def exhausted(self) -> bool:
        return bool(self.steps) and self.steps[-1].exhausted

    @property
    def notified(self) -> int:
        return sum(len(names) for names in self.people.values())

    @property
    def first_told(self) -> datetime | None:
        return next((s.at for i, s in enumerate(self.steps) if self.people.get(i)), None)

    @property
    def reached(self) -> int:
        return max((s.level for s in self.steps if not s.exhausted and not s.skipped), default=0)


@dataclass
class EpisodeRun:
    workstream: Workstream
    until: datetime
    ended: str  # path approved | recovered | closed | still open
    current: Column
    draft: Column

    @property
    def columns(self) -> tuple[Column, Column]:
        return self.current, self.draft


@dataclass
class Load:
    person: str
    week: date  # Monday
    current: int = 0
    draft: int = 0


@dataclass
class Replay:
    days: int
    since: datetime
    episodes: list[EpisodeRun]
    load: list[Load] = field(default_factory=list)

    def _total(self, column: str, what: str) -> int:
        return sum(getattr(getattr(e, column), what) for e in self.episodes)

    @property
    def totals(self) -> dict[str, dict[str, int]]:
        return {
            col: {
                "notified": self._total(col, "notified"),
                "exhausted": sum(getattr(e, col).exhausted for e in self.episodes),
                "busiest": max((getattr(lo, col) for lo in self.load), default=0),
            }
            for col in ("current", "draft")
        }


class _People:
    """Who each level of a policy reaches in an episode, read once per (policy, KPI, people excluded): a thousand
    episodes of a few hundred KPIs share most of them."""

    def __init__(self) -> None:
        self.resolve = Resolver()
        self._seen: dict[tuple, list[list[str]]] = {}

    def levels(self, policy: Policy, ws: Workstream, exclude: dict[int, str]) -> list[list[str]]:
        key = (policy, ws.kpi_id, frozenset(exclude))
        if key not in self._seen:
            self._seen[key] = [
                [m.user.name for m in self.resolve.step(policy, level, ws.kpi, exclude).people]
                for level in range(1, len(policy.levels) + 1)
            ]
        return self._seen[key]


def _column(steps: list[Planned], levels: list[list[str]], admin_names: list[str]) -> Column:
    people = {
        i: admin_names if step.exhausted else levels[step.level - 1]
        for i, step in enumerate(steps)
        if step.exhausted or not step.skipped
    }
    return Column(steps, people)


@lru_cache(maxsize=64)
def _parsed(snapshot: str) -> Policy:
    return Policy.from_json(json.loads(snapshot))


def _snapshot(data: dict) -> Policy:
    # An episode without a snapshot escalated to nobody: its "as run" column stays empty.
    return _parsed(json.dumps(data, sort_keys=True)) if data else Policy(timedelta(0), timedelta(0), 0, ())


def policy_replay(
    *, org: Organization, draft: Policy, policy_key: str = "", days: int = 90, now: datetime | None = None
) -> Replay:
    """The draft against each episode's own policy, over the episodes opened in the last `days` days (those that
    followed `policy_key` when it names a stored policy, else all). A constant number of queries: episodes, their
    paths, and the named groups once each."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    episodes = Workstream.objects.for_org(org).filter(opened_at__gte=since, opened_at__lte=now)
    if policy_key:
        episodes = episodes.filter(policy_key=policy_key)
    # Only what the replay reads: KPI rows are wide, and a replay loads a thousand episodes.
    person = ("user_id", "is_active", "role", "user__name")
    episodes = list(
        episodes.select_related("kpi__owner__user", "kpi__team__lead__user")
        .only(
            "opened_at",
            "resolved_at",
            "resolution",
            "policy",
            "kpi__name",
            "kpi__organization_id",
            "kpi__team_id",
            "kpi__owner_id",
            "kpi__team__lead_id",
            *(f"kpi__owner__{f}" for f in person),
            *(f"kpi__team__lead__{f}" for f in person),
        )
        .order_by("opened_at", "pk")
    )
    approved: dict[int, datetime] = {}
    filers: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for ws_id, state, reviewed, filer, name in MitigationPath.objects.filter(workstream__in=episodes).values_list(
        "workstream_id", "state", "reviewed_at", "filed_by_id", "filed_by__name"
    ):
        filers[ws_id].append((filer, name))
        if state == MitigationPath.State.APPROVED and reviewed:
            approved[ws_id] = min(reviewed, approved.get(ws_id, reviewed))
    hours, people = business_hours(org), _People()
    admin_names = [m.user.name for m in admins(org.pk)]
    tz = org.tzinfo
    runs, load = [], Counter()
    for ws in episodes:
        ends = [(now, "still open")]
        if ws.pk in approved:
            ends.append((approved[ws.pk], "path approved"))
        if ws.resolved_at:
            ends.append((ws.resolved_at, "recovered" if ws.resolution == "recovered" else "closed"))
        until, ended = min(ends, key=lambda e: e[0])
        exclude = four_eyes(ws.kpi, filers.get(ws.pk, ()))
        columns = {}
        current = _snapshot(ws.policy)
        for name, policy in (("current", current), ("draft", draft)):
            levels = people.levels(policy, ws, exclude)
            empty = frozenset(i for i, names in enumerate(levels, start=1) if not names)
            steps = replay(policy, ws.opened_at, hours, until=until, empty=empty)
            columns[name] = _column(steps, levels, admin_names)
            for i, step in enumerate(steps):
                week = timezone.localtime(step.at, tz).date()
                for person in columns[name].people.get(i, []):
                    load[(person, week - timedelta(days=week.weekday()), name)] += 1
        runs.append(EpisodeRun(ws, until, ended, columns["current"], columns["draft"]))
    loads: dict[tuple[str, date], Load] = {}
    for (person, week, name), count in load.items():
        row = loads.setdefault((person, week), Load(person, week))
        setattr(row, name, count)
    ordered = sorted(loads.values(), key=lambda lo: (lo.week, -max(lo.current, lo.draft), lo.person))
    return Replay(days, since, runs, ordered)
