"""What if a KPI stays off track for a while? Which downstream KPIs are likely to follow (by the declared lags and
the lags measured in the data), who would be asked to review, and which escalations reach whom, by when.

The KPI's own episode is planned with escalations.engine.timing.plan (the sweep's step loop) under the policy it
would snapshot now. Downstream episodes opened within it wait on it (inhibition, SEMANTICS.md section 4), so their
escalations start only after the horizon; the page says so instead of inventing steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dependencies.models import Dependency, SuggestedDependency
from escalations.engine.resolver import Resolver, four_eyes, policy_for
from escalations.engine.timing import plan
from governance.hours import business_hours
from governance.models import Role
from scorecards.models import Kpi


@dataclass
class Told:
    at: datetime
    level: int
    people: list[str]
    executives: list[str]
    exhausted: bool = False


@dataclass
class Downstream:
    kpi: Kpi
    via: list[str]  # the KPI names from the one asked about to this one
    expected_at: datetime  # when the breach is expected to arrive
    basis: str  # "declared lag 21 days", "measured: r 0.52, 14 days later"
    within: bool  # expected before the horizon ends
    review_due: datetime | None = None  # direct downstream: the dependency review the owner gets now


@dataclass
class WhatIf:
    kpi: Kpi
    start: datetime
    horizon: datetime
    policy_label: str
    told: list[Told] = field(default_factory=list)
    downstream: list[Downstream] = field(default_factory=list)


def what_if(*, kpi: Kpi, start: datetime, weeks: int = 2) -> WhatIf:
    """`kpi` turns off track at `start` and stays so for `weeks` weeks."""
    horizon = start + timedelta(weeks=weeks)
    key, policy = policy_for(kpi)
    result = WhatIf(kpi, start, horizon, key or "no policy (the owner's task only)")
    resolve, exclude = Resolver(), four_eyes(kpi)
    found = [resolve.step(policy, level, kpi, exclude) for level in range(1, len(policy.levels) + 1)]
    empty = frozenset(i for i, f in enumerate(found, start=1) if not f.people)
    for step in plan(policy, start, business_hours(kpi.organization), empty):
        if step.at > horizon:
            break
        if step.exhausted:
            result.told.append(Told(step.at, step.level, [], [], exhausted=True))
        elif not step.skipped:
            people = found[step.level - 1].people
            executives = [m.user.name for m in people if m.role == Role.EXECUTIVE]
            result.told.append(Told(step.at, step.level, [m.user.name for m in people], executives))
    result.downstream = _downstream(kpi, start, horizon, start + policy.mitigation_due)
    return result


def _downstream(kpi: Kpi, start: datetime, horizon: datetime, review_due: datetime) -> list[Downstream]:
    """Breadth-first down the declared edges and the open suggestions, the earliest arrival first (two queries)."""
    org = kpi.organization
    edges: dict[int, list[tuple[int, timedelta, str]]] = {}
    for up, down, lag in Dependency.objects.for_org(org).values_list("upstream_id", "downstream_id", "lag"):
        edges.setdefault(up, []).append((down, lag or timedelta(0), f"declared lag {(lag or timedelta(0)).days} days"))
    suggested = SuggestedDependency.objects.for_org(org).filter(state=SuggestedDependency.State.SUGGESTED)
    for up, down, lag, r in suggested.values_list("upstream_id", "downstream_id", "lag_days", "coefficient"):
        edges.setdefault(up, []).append((down, timedelta(days=lag), f"measured: r {r:.2f}, {lag} days later"))
    arrival: dict[int, tuple[datetime, list[int], str]] = {kpi.pk: (start, [kpi.pk], "")}
    frontier = [kpi.pk]
    while frontier:
        nxt = []
        for up in frontier:
            at, path, _ = arrival[up]
            for down, lag, basis in edges.get(up, []):
                if down not in arrival or at + lag < arrival[down][0]:
                    arrival[down] = (at + lag, [*path, down], basis)
                    nxt.append(down)
        frontier = nxt
    kpis = Kpi.objects.for_org(org).filter(pk__in=arrival).select_related("owner__user", "team").in_bulk()
    rows = [
        Downstream(
            kpis[pk],
            [kpis[p].name for p in path],
            at,
            basis,
            at <= horizon,
            review_due if len(path) == 2 else None,
        )
        for pk, (at, path, basis) in arrival.items()
        if pk != kpi.pk and pk in kpis and kpis[pk].archived_at is None
    ]
    return sorted(rows, key=lambda d: (d.expected_at, d.kpi.name))
