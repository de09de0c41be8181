"""The executive review's agenda: every KPI that needs a decision, why, since when, and the context to take it
(the episode, the upstream causes, the chart)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.safestring import SafeString

from dependencies import selectors as dependency_selectors
from dependencies.models import Dependency
from escalations.models import (
    Decision,
    DependencyReview,
    MitigationPath,
    ReviewSession,
    Workstream,
)
from governance import formats
from governance.models import Organization
from scorecards.charts import kpi as kpi_chart
from scorecards.models import Kpi, Status, StatusChange
from scorecards.selectors import fetch_series

SEVERITY_RANK = {Status.OFF_TRACK: 0, Status.AT_RISK: 1, Status.STALE: 2}


@dataclass(frozen=True)
class Reason:
    code: str  # path | exhausted | off_track | impact | stale | risk_expired
    text: str
    since: datetime
    open: bool  # still waiting for a decision


@dataclass
class AgendaItem:
    kpi: Kpi
    workstream: Workstream | None
    reasons: list[Reason]
    path: MitigationPath | None = None  # the episode's latest, with its actions
    upstream: list[Dependency] = field(default_factory=list)
    downstream: list[Dependency] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)  # the session's, else the KPI's latest
    risk_until: date | None = None  # an accepted risk still running
    chart: SafeString | str = ""

    @property
    def severity(self) -> str:
        if self.kpi.status in SEVERITY_RANK or self.workstream is None:
            return self.kpi.status
        return self.workstream.severity

    @property
    def since(self) -> datetime:
        # Decided items (in a session) keep their place by the time the KPI went red.
        return min(r.since for r in self.reasons) if self.reasons else self.kpi.status_since or self.kpi.created_at

    @property
    def awaiting(self) -> bool:
        return self.path is not None and self.path.state == MitigationPath.State.SUBMITTED

    @property
    def decided(self) -> bool:
        return not any(r.open for r in self.reasons)

    def sort_key(self) -> tuple:
        return (SEVERITY_RANK.get(self.severity, 9), self.since, self.kpi.name, self.kpi.pk)


def _latest(qs: QuerySet, value: str) -> Subquery:
    return Subquery(qs.values(value)[:1])


def agenda(
    *,
    org: Organization,
    team_id: int | None = None,
    session: ReviewSession | None = None,
    kpi_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> list[AgendaItem]:
    """What needs a decision, the most severe first and within a severity the longest waiting, in a constant number
    of queries. In a session, items decided in it stay listed (with its decisions). `kpi_ids` lists those KPIs
    whatever they need (a decision's response redraws its item)."""
    now = now or timezone.now()
    today = formats.local_day(now, org.tzinfo)
    kpis = _agenda_kpis(org=org, team_id=team_id, session=session, kpi_ids=kpi_ids)
    episodes = _open_episodes([k.pk for k in kpis])
    items = []
    for kpi in kpis:
        ws = episodes.get(kpi.pk)
        if ws is not None:
            ws.kpi = kpi  # already loaded, with its team and owner
        reasons, risk_until = _reasons(kpi, ws, org.tzinfo, today, now)
        item = AgendaItem(kpi=kpi, workstream=ws, reasons=reasons, risk_until=risk_until)
        # Decided in this session: listed even when nothing about the KPI is red any more.
        if kpi_ids is not None or not item.decided or getattr(kpi, "in_session", False):
            items.append(item)
    items.sort(key=AgendaItem.sort_key)
    _attach_context(items, org=org, session=session, now=now)
    return items


def _agenda_kpis(
    *, org: Organization, team_id: int | None, session: ReviewSession | None, kpi_ids: Sequence[int] | None
) -> list[Kpi]:
    """The KPIs that need a decision (or those of `kpi_ids`), with their last decision, closure and accepted risk."""
    open_ws = Workstream.objects.filter(kpi=OuterRef("pk"), resolved_at=None)
    # A downstream owner's "no impact" assesses an upstream change, not this KPI's own breach.
    on_kpi = (
        Decision.objects.filter(kpi=OuterRef("pk"))
        .exclude(kind=Decision.Kind.REVIEW_NO_IMPACT)
        .order_by("-decided_at", "-id")
    )
    risks = on_kpi.filter(kind=Decision.Kind.RISK_ACCEPTED)
    closed = Workstream.objects.filter(kpi=OuterRef("pk"), closed_by__isnull=False).order_by("-resolved_at")
    kpis = Kpi.objects.for_org(org).filter(archived_at=None)
    if kpi_ids is not None:
        kpis = kpis.filter(pk__in=list(kpi_ids))
    else:
        flagged = open_ws.filter(
            Q(paths__state=MitigationPath.State.SUBMITTED)
            | Q(exhausted_at__isnull=False)
            | Q(dependency_reviews__answer=DependencyReview.Answer.IMPACT)
        )
        wanted = Q(status__in=[Status.OFF_TRACK, Status.STALE]) | Q(Exists(flagged))
        if session is not None:
            kpis = kpis.annotate(in_session=Exists(Decision.objects.filter(session=session, kpi=OuterRef("pk"))))
            wanted |= Q(in_session=True)
        kpis = kpis.filter(wanted)
    if team_id:
        kpis = kpis.filter(team_id=team_id)
    return list(
        kpis.select_related("team", "owner__user").annotate(
            last_decision_at=_latest(on_kpi, "decided_at"),
            last_closed_at=_latest(closed, "resolved_at"),
            risk_until=_latest(risks, "expected_by"),
            risk_at=_latest(risks, "decided_at"),
        )
    )


def _open_episodes(kpi_ids: list[int]) -> dict[int, Workstream]:
    """Each KPI's open episode, with when a path began to await review, whether one is approved, and the latest
    impact a dependency review reported."""
    submitted = MitigationPath.objects.filter(workstream=OuterRef("pk"), state=MitigationPath.State.SUBMITTED)
    impact = DependencyReview.objects.filter(workstream=OuterRef("pk"), answer=DependencyReview.Answer.IMPACT).order_by(
        "-answered_at"
    )
    return {
        ws.kpi_id: ws
        for ws in Workstream.objects.filter(kpi_id__in=kpi_ids, resolved_at=None).annotate(
            awaiting_at=_latest(submitted.order_by("-filed_at"), "filed_at"),
            approved=Exists(
                MitigationPath.objects.filter(workstream=OuterRef("pk"), state=MitigationPath.State.APPROVED)
            ),
            impact_at=_latest(impact, "answered_at"),
        )
    }


def _reasons(
    kpi: Kpi, ws: Workstream | None, tz: tzinfo, today: date, now: datetime
) -> tuple[list[Reason], date | None]:
    """Why the KPI needs a decision, each reason with the time it arose and whether a decision answered it since."""
    decided = max((t for t in (kpi.last_decision_at, kpi.last_closed_at) if t is not None), default=None)
    # An accepted risk of this episode (or, without one, of the KPI) holds its reasons until the day it ends.
    risk = kpi.risk_until if kpi.risk_until and (ws is None or kpi.risk_at >= ws.opened_at) else None
    running = risk if risk is not None and risk > today else None
    ended = formats.midnight(risk, tz) if risk is not None and running is None else None
    since_red = kpi.status_since or (ws.opened_at if ws else now)

    def reason(code: str, text: str, since: datetime) -> Reason:
        since = max(since, ended) if ended else since
        answered = running is not None or (decided is not None and decided >= since)
        return Reason(code, text, since, not answered)

    reasons = []
    if ws is not None and ws.awaiting_at:
        # Not answered by any other decision: a path is approved or rejected.
        reasons.append(Reason("path", "Mitigation path awaiting review", ws.awaiting_at, True))
    if ws is not None and ws.exhausted_at:
        reasons.append(reason("exhausted", "Escalation exhausted without an approved path", ws.exhausted_at))
    if kpi.status == Status.OFF_TRACK and not (ws is not None and ws.approved):
        reasons.append(reason("off_track", "Off track without an approved mitigation path", since_red))
    if ws is not None and ws.impact_at:
        reasons.append(reason("impact", "Impact from upstream: a dependency review answered “impact”", ws.impact_at))
    if kpi.status == Status.STALE:
        reasons.append(reason("stale", "Stale: no fresh data", since_red))
    if ended is not None and reasons and kpi.status in SEVERITY_RANK:
        reasons.append(reason("risk_expired", f"The risk accepted until {formats.day(risk)} has run out", ended))
    return reasons, running


def _attach_context(
    items: list[AgendaItem], *, org: Organization, session: ReviewSession | None, now: datetime
) -> None:
    """Each item's latest path with its actions, its direct upstream and downstream KPIs, its decisions: three
    queries whatever the number of items (plus the charts: two more)."""
    if not items:
        return
    ids = [i.kpi.pk for i in items]
    ws_ids = [i.workstream.pk for i in items if i.workstream is not None]
    latest: dict[int, MitigationPath] = {}
    for path in (
        MitigationPath.objects.filter(workstream_id__in=ws_ids)
        .select_related("filed_by", "reviewed_by")
        .prefetch_related("actions__owner__user")
        .order_by("workstream_id", "-filed_at", "-id")
    ):
        latest.setdefault(path.workstream_id, path)
    edges = dependency_selectors.edges(org=org).filter(Q(upstream_id__in=ids) | Q(downstream_id__in=ids))
    ups: dict[int, list[Dependency]] = {}
    downs: dict[int, list[Dependency]] = {}
    for edge in edges.order_by("pk"):
        ups.setdefault(edge.downstream_id, []).append(edge)
        downs.setdefault(edge.upstream_id, []).append(edge)
    decisions = Decision.objects.filter(kpi_id__in=ids).select_related("decided_by")
    if session is not None:
        decisions = decisions.filter(session=session)
    else:
        decisions = decisions.filter(decided_at__gte=now - timedelta(days=90))
    by_kpi: dict[int, list[Decision]] = {}
    for decision in decisions.order_by("-decided_at", "-id"):
        by_kpi.setdefault(decision.kpi_id, []).append(decision)
    for item in items:
        item.path = latest.get(item.workstream.pk) if item.workstream is not None else None
        if item.path is not None:
            item.path.workstream = item.workstream  # loaded, with its KPI and owner
        item.upstream = ups.get(item.kpi.pk, [])
        item.downstream = downs.get(item.kpi.pk, [])
        item.decisions = by_kpi.get(item.kpi.pk, [])[: None if session else 3]


def attach_charts(
    kpis: Sequence[Kpi], tz: tzinfo, *, now: datetime | None = None, width: int = 760, height: int = 280
) -> dict[int, SafeString]:
    """The KPI page's chart of each KPI, from two queries for all of them."""
    if not kpis:
        return {}
    now = now or timezone.now()
    since = min(kpi_chart.data_since(k, now) for k in kpis)
    series = fetch_series([k.pk for k in kpis], since, now)
    changes: dict[int, list[StatusChange]] = {}
    for change in StatusChange.objects.filter(kpi_id__in=[k.pk for k in kpis], changed_at__gte=now - kpi_chart.DAYS):
        changes.setdefault(change.kpi_id, []).append(change)
    return {
        k.pk: kpi_chart.kpi_chart(
            k,
            tz,
            raw=[(at, v) for at, v in series.get(k.pk, []) if at > kpi_chart.data_since(k, now)],
            changes=changes.get(k.pk, []),
            now=now,
            width=width,
            height=height,
        )
        for k in kpis
    }
