"""The decision log and the sessions' minutes: what was decided, what came of it, the open actions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, QuerySet
from django.utils import timezone

from escalations.decisions.services import SESSION_ACTIONS
from escalations.models import (
    Decision,
    MitigationAction,
    MitigationPath,
    ReviewSession,
    Workstream,
)
from governance import formats
from governance.models import Membership, Organization
from scorecards.models import Kpi, Status, StatusChange
from scorecards.selectors import visible_kpis


def decision_list(
    *,
    org: Organization,
    kpi: Kpi | None = None,
    workstream: Workstream | None = None,
    session: ReviewSession | None = None,
    kind: str = "",
    team_id: int | None = None,
) -> QuerySet[Decision]:
    """Newest first, with what the log shows of each (the KPI, who, the path, action or transfer it made)."""
    qs = Decision.objects.for_org(org).select_related(
        "kpi__team",
        "kpi__owner__user",
        "decided_by",
        "workstream",
        "session",
        "path",
        "action__owner__user",
        "transfer__to_owner__user",
    )
    if kpi is not None:
        qs = qs.filter(kpi=kpi)
    if workstream is not None:
        qs = qs.filter(workstream=workstream)
    if session is not None:
        qs = qs.filter(session=session)
    if kind:
        qs = qs.filter(kind=kind)
    if team_id:
        qs = qs.filter(kpi__team_id=team_id)
    return qs.order_by("-decided_at", "-id")


@dataclass(frozen=True)
class Outcome:
    """What happened next to the KPI: on_time | late | missed | due | recovered | open."""

    state: str
    text: str
    recovered_at: datetime | None = None


def outcomes(*, org: Organization, decisions: Sequence[Decision], now: datetime | None = None) -> dict[int, Outcome]:
    """Did each decision's KPI recover (officially on track) by its expected date? From the KPIs' status history,
    in one query."""
    if not decisions:
        return {}
    now, tz = now or timezone.now(), org.tzinfo
    recoveries: dict[int, list[datetime]] = {}
    for kpi_id, at in (
        StatusChange.objects.filter(
            organization=org,
            kpi_id__in={d.kpi_id for d in decisions},
            new=Status.ON_TRACK,
            changed_at__gte=min(d.decided_at for d in decisions),
        )
        .order_by("changed_at")
        .values_list("kpi_id", "changed_at")
    ):
        recoveries.setdefault(kpi_id, []).append(at)
    result = {}
    for d in decisions:
        recovered = next((at for at in recoveries.get(d.kpi_id, []) if at >= d.decided_at), None)
        # The expected day counts whole, in the organization's calendar.
        deadline = formats.midnight(d.expected_by + timedelta(days=1), tz) if d.expected_by else None
        status = d.kpi.get_status_display().lower()
        if recovered is not None:
            local = timezone.localtime(recovered, tz)
            day = f"{formats.day(local)}"
            if deadline is None:
                result[d.pk] = Outcome("recovered", f"On track since {day}", recovered)
            elif recovered < deadline:
                result[d.pk] = Outcome("on_time", f"On track on {day}, as expected", recovered)
            else:
                late = (timezone.localtime(recovered, tz).date() - d.expected_by).days
                result[d.pk] = Outcome("late", f"On track on {day}, {late} day{'s' * (late != 1)} late", recovered)
        elif d.kpi.status == Status.ON_TRACK:
            result[d.pk] = Outcome("recovered", "On track")
        elif deadline is not None and now >= deadline:
            result[d.pk] = Outcome("missed", f"Missed: still {status} after {formats.day(d.expected_by)}")
        elif deadline is not None:
            result[d.pk] = Outcome("due", f"Expected on track by {formats.day(d.expected_by)}; now {status}")
        else:
            result[d.pk] = Outcome("open", f"Now {status}")
    return result


def session_list(*, org: Organization) -> QuerySet[ReviewSession]:
    return (
        ReviewSession.objects.for_org(org)
        .order_by("-started_at", "-id")
        .select_related("started_by", "closed_by")
        .annotate(n_decisions=Count("decisions", distinct=True), n_attendees=Count("attendance", distinct=True))
    )


def session_attendees(session: ReviewSession) -> list[Membership]:
    return list(session.attendees.select_related("user").order_by("user__name"))


@dataclass
class OpenActions:
    """The organization's open actions as a review session shows them, on its page and in its steering pack alike:
    the soonest due (`rows`, at most `limit`), how many there are in all, and which ones the session assigned."""

    rows: list[MitigationAction]
    total: int
    assigned_here: set[int]


def session_open_actions(
    *, session: ReviewSession, viewer: Membership | None, limit: int = SESSION_ACTIONS
) -> OpenActions:
    """The open actions on the KPIs `viewer` may see (None: all), with those this session assigned marked."""
    visible = visible_kpis(Kpi.objects.for_org(session.organization), viewer)
    actions = open_actions(org=session.organization).filter(path__workstream__kpi__in=visible)
    assigned = Decision.objects.filter(session=session, action__isnull=False).values_list("action_id", flat=True)
    return OpenActions(list(actions[:limit]), actions.count(), set(assigned))


def open_actions(*, org: Organization) -> QuerySet[MitigationAction]:
    """Actions being carried out: not done, on the approved or awaiting path of an open episode; soonest due first."""
    return (
        MitigationAction.objects.for_org(org)
        .filter(done_at=None, path__workstream__resolved_at=None)
        .exclude(path__state=MitigationPath.State.REJECTED)
        .select_related("owner__user", "path__workstream__kpi")
        .order_by("due", "id")
    )
