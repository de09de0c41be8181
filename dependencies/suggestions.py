"""Suggested dependencies: the weekly run that measures them (dependencies.discovery) and the owners' answers.

A pair is one pair whichever way it points: a later run may find it the other way round, and a dismissal covers
both directions. A dismissed pair comes back only when a run measures |r| at least `RESUGGEST_MARGIN` above the
|r| it had when dismissed: the same evidence twice is not news, clearly stronger evidence is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from dependencies.discovery import discover, strongest, weekly_adjusted
from dependencies.models import Dependency, SuggestedDependency
from dependencies.services import dependency_create
from governance.models import Organization, User
from governance.services.audit import audit_log
from scorecards.models import Kpi, Measurement

RESUGGEST_MARGIN = 0.2


@dataclass(frozen=True)
class Settings:
    history_days: int
    max_lag: int
    min_points: int
    alpha: float
    per_kpi: int

    @classmethod
    def current(cls) -> Settings:
        return cls(**settings.FORESIGHT_DISCOVERY)


def daily_levels(
    rows: list[tuple[int, datetime, float]], row_of: dict[int, int], start: date, days: int, tz
) -> np.ndarray:
    """KPIs x days: each day's last value in the organization's calendar, NaN on a day without one."""
    levels = np.full((len(row_of), days), np.nan)
    for kpi_id, at, value in rows:  # ordered by time: a later value of the same day replaces an earlier one
        day = (timezone.localtime(at, tz).date() - start).days
        if 0 <= day < days:
            levels[row_of[kpi_id], day] = value
    return levels


def daily_series(org: Organization, kpis: list[int], now: datetime, days: int) -> tuple[np.ndarray, date]:
    """The `days` days up to `now` of each of `kpis` (daily_levels), and the first day's date."""
    tz = org.tzinfo
    start = timezone.localtime(now, tz).date() - timedelta(days=days - 1)
    since = datetime.combine(start, datetime.min.time(), tzinfo=tz)
    rows = (
        Measurement.objects.for_org(org)
        .filter(kpi_id__in=kpis, at__gte=since, at__lte=now)
        .order_by("at")
        .values_list("kpi_id", "at", "value")
    )
    return daily_levels(
        list(rows.iterator(chunk_size=10_000)), {k: i for i, k in enumerate(kpis)}, start, days, tz
    ), start


def suggestions_refresh(*, org: Organization, now: datetime | None = None, config: Settings | None = None) -> int:
    """Measures every cross-team pair of the organization's KPIs and stores the strongest few per KPI as suggestions
    (new ones, fresher evidence for open ones, dismissed ones only if much stronger now). Open suggestions the data no
    longer supports are removed. Returns how many suggestions are open afterwards."""
    now, config = now or timezone.now(), config or Settings.current()
    kpis = list(Kpi.objects.for_org(org).filter(archived_at=None).order_by("pk").values_list("pk", "team_id"))
    ids = [pk for pk, _ in kpis]
    levels, _ = daily_series(org, ids, now, config.history_days + 1)
    # The computation holds no lock and no transaction: only the writes below do.
    found = strongest(
        discover(
            weekly_adjusted(np.diff(levels, axis=1)),
            np.array([team for _, team in kpis]),
            max_lag=config.max_lag,
            min_points=config.min_points,
            alpha=config.alpha,
        ),
        config.per_kpi,
    )
    with transaction.atomic():
        return _store(org, now, [(ids[f.leader], ids[f.follower], f) for f in found])


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _store(org: Organization, now: datetime, found: list) -> int:
    edges = {_pair(u, d) for u, d in Dependency.objects.for_org(org).values_list("upstream_id", "downstream_id")}
    known = {_pair(s.upstream_id, s.downstream_id): s for s in SuggestedDependency.objects.for_org(org)}
    seen = set()
    for up, down, f in found:
        pair = _pair(up, down)
        if pair in edges:
            continue
        seen.add(pair)
        evidence = {
            "coefficient": f.r,
            "lag_days": f.lag,
            "points": f.points,
            "p_value": f.p,
            "q_value": f.q,
            "computed_at": now,
        }
        s = known.get(pair)
        if s is None:
            SuggestedDependency.objects.create(organization=org, upstream_id=up, downstream_id=down, **evidence)
            continue
        if s.state == SuggestedDependency.State.CONFIRMED:
            continue
        if s.state == SuggestedDependency.State.DISMISSED:
            if abs(f.r) < (s.dismissed_coefficient or 0) + RESUGGEST_MARGIN:
                continue
            audit_log(
                org=org,
                actor=None,
                verb="suggestion.resuggested",
                obj=s,
                before={"coefficient": s.dismissed_coefficient, "reason": s.reason},
                after={"coefficient": f.r},
            )
        if (s.upstream_id, s.downstream_id) != (up, down) or s.state != SuggestedDependency.State.SUGGESTED:
            s.upstream_confirmed_by = s.downstream_confirmed_by = None  # a different claim: ask both again
        s.upstream_id, s.downstream_id, s.state = up, down, SuggestedDependency.State.SUGGESTED
        for name, value in evidence.items():
            setattr(s, name, value)
        s.save()
    stale = [s.pk for pair, s in known.items() if s.state == SuggestedDependency.State.SUGGESTED and pair not in seen]
    SuggestedDependency.objects.filter(pk__in=stale).delete()
    return SuggestedDependency.objects.for_org(org).filter(state=SuggestedDependency.State.SUGGESTED).count()


def _sides(suggestion: SuggestedDependency, actor: User) -> list[str]:
    """Which ends of the suggestion `actor` owns."""
    return [end for end in ("upstream", "downstream") if getattr(suggestion, end).owner.user_id == actor.pk]


@transaction.atomic
def suggestion_confirm(*, suggestion: SuggestedDependency, actor: User, kind: str) -> SuggestedDependency:
    """The owner of either KPI confirms; once both owners have, the edge is drawn with the measured lag."""
    suggestion = (
        SuggestedDependency.objects.select_for_update()
        .select_related("organization", "upstream__owner", "downstream__owner")
        .get(pk=suggestion.pk)
    )
    if suggestion.state != SuggestedDependency.State.SUGGESTED:
        raise ValidationError(f"This suggestion was already {suggestion.get_state_display().lower()}.")
    sides = _sides(suggestion, actor)
    if not sides:
        raise ValidationError("Only the owners of the two KPIs answer a suggestion.")
    for end in sides:
        setattr(suggestion, f"{end}_confirmed_by", actor)
    audit_log(
        org=suggestion.organization, actor=actor, verb="suggestion.confirmed", obj=suggestion, after={"as": sides}
    )
    if suggestion.upstream_confirmed_by_id and suggestion.downstream_confirmed_by_id:
        suggestion.dependency = dependency_create(
            actor=actor,
            upstream=suggestion.upstream,
            downstream=suggestion.downstream,
            kind=kind,
            lag=timedelta(days=suggestion.lag_days),
            note=(
                f"Found in the data: r = {suggestion.coefficient:.2f} over {suggestion.points} days, "
                f"{suggestion.lag_days} days later; confirmed by both owners."
            ),
        )
        suggestion.state, suggestion.decided_by, suggestion.decided_at = (
            SuggestedDependency.State.CONFIRMED,
            actor,
            timezone.now(),
        )
    suggestion.save()
    return suggestion


@transaction.atomic
def suggestion_dismiss(*, suggestion: SuggestedDependency, actor: User, reason: str) -> SuggestedDependency:
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why the two are not related, so nobody is asked again for nothing."})
    suggestion = (
        SuggestedDependency.objects.select_for_update()
        .select_related("organization", "upstream__owner", "downstream__owner")
        .get(pk=suggestion.pk)
    )
    if suggestion.state != SuggestedDependency.State.SUGGESTED:
        raise ValidationError(f"This suggestion was already {suggestion.get_state_display().lower()}.")
    if not _sides(suggestion, actor):
        raise ValidationError("Only the owners of the two KPIs answer a suggestion.")
    suggestion.state, suggestion.reason = SuggestedDependency.State.DISMISSED, reason
    suggestion.decided_by, suggestion.decided_at = actor, timezone.now()
    suggestion.dismissed_coefficient = abs(suggestion.coefficient)
    suggestion.save()
    audit_log(
        org=suggestion.organization,
        actor=actor,
        verb="suggestion.dismissed",
        obj=suggestion,
        after={"reason": reason, "coefficient": suggestion.coefficient},
    )
    return suggestion
