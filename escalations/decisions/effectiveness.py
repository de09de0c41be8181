"""Did the path work? For an approved mitigation path whose actions are all done: the KPI's trend (least-squares
slope per day) over the two weeks before the last action was done and the two weeks after. The slope maths is pure;
`path_effects` reads what a page of decisions needs in two queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from escalations.models import Decision, MitigationAction
from governance.models import Organization
from scorecards.models import Measurement

WINDOW = timedelta(days=14)
MIN_POINTS = 3


def slope(points: Sequence[tuple[datetime, float]]) -> float | None:
    """Least-squares change per day; None with fewer than MIN_POINTS points or all at one time."""
    if len(points) < MIN_POINTS:
        return None
    xs = [at.timestamp() / 86400 for at, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    if spread == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread


@dataclass(frozen=True)
class Effect:
    done: datetime  # when the path's last action was done
    before: float  # slope per day over WINDOW before `done`
    after: float  # ... and after
    better: bool | None  # the trend moved the KPI's good way (None: a range KPI, no good way)

    @property
    def text(self) -> str:
        verdict = "" if self.better is None else ("improved" if self.better else "did not improve")
        return f"Trend {self.before:+.3g}/day before the actions, {self.after:+.3g}/day after" + (
            f": {verdict}" if verdict else ""
        )


def trend_change(points: Sequence[tuple[datetime, float]], done: datetime, direction: str) -> Effect | None:
    before = slope([(at, v) for at, v in points if done - WINDOW <= at < done])
    after = slope([(at, v) for at, v in points if done <= at <= done + WINDOW])
    if before is None or after is None:
        return None
    better = None if direction == "range" else (after > before if direction == "increase" else after < before)
    return Effect(done, before, after, better)


def path_effects(*, org: Organization, decisions: Sequence[Decision]) -> dict[int, Effect]:
    """The trend change of each path approval among `decisions` whose actions are all done."""
    approvals = [d for d in decisions if d.kind == Decision.Kind.PATH_APPROVED and d.path_id]
    if not approvals:
        return {}
    pending, last = set(), {}
    actions = MitigationAction.objects.filter(organization=org, path_id__in={d.path_id for d in approvals})
    for path_id, at in actions.values_list("path_id", "done_at"):
        if at is None:
            pending.add(path_id)
        else:
            last[path_id] = max(at, last.get(path_id, at))
    finished = {d.pk: last[d.path_id] for d in approvals if d.path_id in last and d.path_id not in pending}
    if not finished:
        return {}
    series: dict[int, list[tuple[datetime, float]]] = {}
    for kpi_id, at, value in (
        Measurement.objects.filter(
            organization=org,
            kpi_id__in={d.kpi_id for d in approvals if d.pk in finished},
            at__gte=min(finished.values()) - WINDOW,
            at__lte=max(finished.values()) + WINDOW,
        )
        .order_by("at")
        .values_list("kpi_id", "at", "value")
    ):
        series.setdefault(kpi_id, []).append((at, value))
    effects = {}
    for d in approvals:
        if d.pk in finished:
            effect = trend_change(series.get(d.kpi_id, []), finished[d.pk], d.kpi.direction)
            if effect is not None:
                effects[d.pk] = effect
    return effects
