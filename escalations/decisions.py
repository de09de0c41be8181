"""Executive reviews and the decision log: every red item ends in a recorded decision.

Writes. Each kind of decision is one service that makes its change through the code that owns it (the path review
of escalations.services, the KPI update and the transfer request and decision of scorecards.services, the
escalation state the sweeps read) and records a Decision with its reason in the same transaction
(escalations.deciding.decision_record), audited and on the workstream's timeline. Who may decide is the decision's
authority (escalations.deciding.authority: four eyes). A review session groups the decisions taken while it is
open: its minutes.

Reads. `agenda` composes what needs a decision, in a constant number of queries: mitigation paths awaiting
review, exhausted escalations, off-track KPIs without an approved path, dependency reviews answered "impact",
stale KPIs, and risks accepted until a day that has come. An item stays on the agenda until a decision on its KPI
is recorded after the item's reason arose (a path awaiting review stays until it is approved or rejected).
`outcomes` says what happened next: did the KPI recover by the decision's expected date?
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.safestring import SafeString

from dependencies import selectors as dependency_selectors
from dependencies.models import Dependency
from escalations import services
from escalations.deciding import authority, decision_record, expected_day, require
from escalations.models import (
    Decision,
    DependencyReview,
    MitigationAction,
    MitigationPath,
    ReviewAttendee,
    ReviewSession,
    Task,
    Workstream,
)
from escalations.notifications import Message, notify
from escalations.sweeps import event, mitigated, workstream_url
from governance.access import DECISION_ROLES, decision_reason
from governance.models import Membership, Organization
from governance.services import audit_log, snapshot
from scorecards import services as scorecard_services
from scorecards.charts import kpi as kpi_chart
from scorecards.evaluation.thresholds import settings_errors
from scorecards.models import Kpi, OwnershipTransfer, Status, StatusChange
from scorecards.selectors import fetch_series, visible_kpis

DECIDERS = DECISION_ROLES["risk_accept"]  # who decides on the agenda and runs a review: executives and admins
OPEN_TASKS = [Task.State.OPEN, Task.State.ACKNOWLEDGED]
MAX_RISK = timedelta(days=366)  # a risk is accepted for a year at most: then it comes back to a review
TARGET_FIELDS = ["target_value", "target_by", "thresholds"]
SESSION_ACTIONS = 60  # a session lists the soonest due open actions; the workstream pages have the rest


def may_decide(membership: Membership | None) -> bool:
    return membership is not None and membership.is_active and membership.role in DECIDERS


def midnight(day: date, tz: tzinfo) -> datetime:
    """The start of `day` in the organization's calendar."""
    return datetime.combine(day, time(), tz)


def _day(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def _today(org: Organization, now: datetime | None = None) -> date:
    return timezone.localdate(now or timezone.now(), org.tzinfo)


def _open_workstream(kpi: Kpi) -> Workstream | None:
    return Workstream.objects.filter(kpi_id=kpi.pk, resolved_at=None).first()


def _tell(kpi: Kpi, people: Iterable[Membership], subject: str, body: str, key: str, ws: Workstream | None) -> None:
    org = kpi.organization
    url = workstream_url(ws) if ws is not None else f"/o/{org.slug}/kpis/{kpi.pk}/"
    notify(
        recipients=list({m.pk: m for m in people if m.is_active}.values()),
        message=Message(kind="decision", subject=subject, body=body, url=url),
        dedup_key=f"{kpi.organization_id}:{kpi.pk}:{key}",
        workstream=ws,
    )


# --- one service per kind of decision -------------------------------------------------------------------------


@transaction.atomic
def decision_review_path(
    *,
    path: MitigationPath,
    by: Membership,
    approve: bool,
    reason: str,
    expected_by: date | None = None,
    session: ReviewSession | None = None,
) -> Decision:
    """Approve or reject a mitigation path through the path review, which records the decision (the same rules and
    the same row as on the workstream page and the API)."""
    path = services.mitigation_path_review(
        path=path, by=by, approve=approve, comment=reason, expected_by=expected_by, session=session
    )
    return Decision.objects.filter(path=path).latest("decided_at", "id")


@transaction.atomic
def decision_accept_risk(
    *, workstream: Workstream, by: Membership, reason: str, until: date, session: ReviewSession | None = None
) -> Decision:
    """Escalation of the episode pauses until the start of `until` (the organization's calendar): its next step is
    due then, at level 1, as the sweep reads it from `next_escalation_at`. Open escalation tasks are answered by the
    decision. Recovery before then ends the episode as usual; an approved path's overdue action restarts escalation
    at once (a new fact outweighs an old acceptance)."""
    ws = services.workstream_locked(workstream)
    kpi = ws.kpi
    allowed = require(authority("risk_accept", by=by, workstream=ws))
    reason = decision_reason(reason)
    today = _today(ws.organization)
    if until <= today:
        raise ValidationError({"until": "Accept the risk until a day after today."})
    if until - today > MAX_RISK:
        raise ValidationError({"until": "A risk is accepted for a year at most; review it again before then."})
    now = timezone.now()
    resumes = midnight(until, ws.organization.tzinfo)
    before = snapshot(ws, ["level", "escalation_pass", "next_escalation_at", "exhausted_at"])
    escalates = bool(ws.policy.get("levels")) and not mitigated(ws)
    if escalates:
        ws.level, ws.escalation_pass, ws.renotify, ws.exhausted_at = 0, 0, False, None
        ws.next_escalation_at = resumes
        ws.save(update_fields=["level", "escalation_pass", "renotify", "exhausted_at", "next_escalation_at"])
    answered = ws.tasks.filter(kind=Task.Kind.ESCALATION, state__in=OPEN_TASKS).update(
        state=Task.State.DONE, done_at=now
    )
    then = "escalation starts again at level 1 then" if escalates else "no escalation runs in this episode"
    event(
        ws,
        now,
        "risk_accepted",
        f"Risk accepted until {until:%a %d %b %Y}; unless {kpi.name} is on track by then, {then}",
        by.user,
    )
    decision = decision_record(
        kind=Decision.Kind.RISK_ACCEPTED,
        kpi=kpi,
        by=by,
        authority=allowed,
        reason=reason,
        session=session,
        workstream=ws,
        expected_by=until,
        payload={
            "until": until.isoformat(),
            "escalation_resumes_at": resumes.isoformat() if escalates else None,
            "escalation_before": before,
            "escalation_tasks_answered": answered,
        },
    )
    _tell(
        kpi,
        [kpi.owner],
        f"Risk on {kpi.name} accepted until {until:%d %b %Y}",
        f"{by.user.name}: {decision.reason}",
        f"decision{decision.pk}",
        ws,
    )
    return decision


@transaction.atomic
def decision_change_target(
    *,
    kpi: Kpi,
    by: Membership,
    reason: str,
    target_value: float | None,
    target_by: date | None,
    thresholds: dict,
    expected_by: date | None = None,
    session: ReviewSession | None = None,
) -> Decision:
    """A new target or new thresholds through the KPI update (audited as kpi.updated); the KPI is evaluated against
    them at the next sweep, and an episode it leaves recovers by the usual rules (keep_for, recovery margin)."""
    stored = Kpi.objects.select_for_update(of=("self",)).select_related("organization", "owner").get(pk=kpi.pk)
    allowed = require(authority("target_change", by=by, kpi=stored))
    reason = decision_reason(reason)
    expected_day(expected_by, org=stored.organization)
    errors = settings_errors(
        stored.direction,
        thresholds,
        target_value=target_value,
        target_by=target_by,
        baseline_value=stored.baseline_value,
        baseline_at=stored.baseline_at,
    )
    if errors:
        raise ValidationError(errors)
    before = snapshot(stored, TARGET_FIELDS)
    scorecard_services.kpi_update(
        kpi=stored, actor=by.user, target_value=target_value, target_by=target_by, thresholds=thresholds
    )
    after = snapshot(stored, TARGET_FIELDS)
    if after == before:
        raise ValidationError("Nothing changed: give a new target or new thresholds.")
    # Judged by the new thresholds at the next sweep instead of at its next evaluate_every tick.
    scorecard_services.kpi_schedule_evaluation(kpi=stored)
    ws = _open_workstream(stored)
    decision = decision_record(
        kind=Decision.Kind.TARGET_CHANGED,
        kpi=stored,
        by=by,
        authority=allowed,
        reason=reason,
        session=session,
        workstream=ws,
        expected_by=expected_by,
        payload={"before": before, "after": after},
    )
    _tell(
        stored,
        [stored.owner],
        f"Target of {stored.name} changed",
        f"{by.user.name}: {decision.reason}",
        f"decision{decision.pk}",
        ws,
    )
    return decision


@transaction.atomic
def decision_request_transfer(
    *,
    kpi: Kpi,
    by: Membership,
    to_owner: Membership,
    reason: str,
    expected_by: date | None = None,
    session: ReviewSession | None = None,
) -> Decision:
    """An ownership transfer request (scorecards.services): another executive or admin approves it."""
    allowed = require(authority("transfer_request", by=by))
    reason = decision_reason(reason)
    kpi = Kpi.objects.select_related("owner__user", "organization").get(pk=kpi.pk)
    expected_day(expected_by, org=kpi.organization)
    transfer = scorecard_services.ownership_transfer_request(kpi=kpi, requester=by, to_owner=to_owner, reason=reason)
    return decision_record(
        kind=Decision.Kind.TRANSFER_REQUESTED,
        kpi=kpi,
        by=by,
        authority=allowed,
        reason=reason,
        session=session,
        workstream=_open_workstream(kpi),
        expected_by=expected_by,
        transfer=transfer,
        payload={"from_owner": str(kpi.owner), "to_owner": str(to_owner)},
    )


@transaction.atomic
def decision_transfer(*, transfer: OwnershipTransfer, by: Membership, approve: bool, reason: str) -> Decision:
    """Approve or refuse an ownership transfer through scorecards' service (another admin or executive than the
    requester, with a reason), recorded in the decision log: the entry point of the KPI page."""
    stored = OwnershipTransfer.objects.select_related("kpi__organization", "from_owner__user", "to_owner__user").get(
        pk=transfer.pk
    )
    allowed = require(scorecard_services.transfer_authority(stored, by))
    decided = scorecard_services.ownership_transfer_decide(transfer=stored, decider=by, approve=approve, note=reason)
    return decision_record(
        kind=Decision.Kind.TRANSFER_DECIDED,
        kpi=stored.kpi,
        by=by,
        authority=allowed,
        reason=decided.decision_note,
        workstream=_open_workstream(stored.kpi),
        transfer=decided,
        payload={"approved": approve, "from_owner": str(stored.from_owner), "to_owner": str(stored.to_owner)},
        now=decided.decided_at,
    )


def action_path(ws: Workstream) -> MitigationPath | None:
    """The path an assigned action joins: the approved one being carried out, else the one awaiting review."""
    paths = {p.state: p for p in ws.paths.exclude(state=MitigationPath.State.REJECTED).order_by("filed_at", "id")}
    return paths.get(MitigationPath.State.APPROVED) or paths.get(MitigationPath.State.SUBMITTED)


@transaction.atomic
def decision_assign_action(
    *,
    workstream: Workstream,
    by: Membership,
    reason: str,
    description: str,
    owner: Membership,
    due: date,
    expected_by: date | None = None,
    session: ReviewSession | None = None,
) -> Decision:
    """A new action on the episode's path, owned by anyone active in the organization. It is carried out and
    goes overdue like the owner's own actions (on an approved path, an overdue one restarts escalation)."""
    ws = services.workstream_locked(workstream)
    kpi = ws.kpi
    allowed = require(authority("action_assign", by=by))
    reason = decision_reason(reason)
    expected_day(expected_by, org=ws.organization)
    path = action_path(ws)
    errors: dict[str, list[str]] = {}
    if path is None:
        errors["__all__"] = [
            "No mitigation path to add the action to: the owner has not filed one, or it was rejected. "
            "Accept the risk, change the target or transfer the ownership instead."
        ]
    if not description.strip():
        errors["description"] = ["Say what must be done."]
    if owner.organization_id != ws.organization_id or not owner.is_active:
        errors["owner"] = ["The action's owner must be an active member."]
    if due < _today(ws.organization):
        errors["due"] = ["The action cannot be due in the past."]
    if errors:
        raise ValidationError(errors)
    action = MitigationAction.objects.create(
        organization_id=ws.organization_id, path=path, description=description.strip(), owner=owner, due=due
    )
    now = timezone.now()
    event(
        ws,
        now,
        "action_assigned",
        f"Action for {owner.user.name}, due {due:%a %d %b}: {action.description}",
        by.user,
    )
    audit_log(
        org=ws.organization,
        actor=by.user,
        verb="mitigation_action.assigned",
        obj=action,
        after={"owner": str(owner), "due": due.isoformat(), "path": path.pk},
    )
    decision = decision_record(
        kind=Decision.Kind.ACTION_ASSIGNED,
        kpi=kpi,
        by=by,
        authority=allowed,
        reason=reason,
        session=session,
        workstream=ws,
        expected_by=expected_by,
        path=path,
        action=action,
        payload={"description": action.description, "owner": str(owner), "due": due.isoformat()},
    )
    _tell(
        kpi,
        [owner, kpi.owner],
        f"Action for {kpi.name}: {action.description[:80]}",
        f"{owner.user.name}, due {due:%a %d %b}. {by.user.name}: {decision.reason}",
        f"decision{decision.pk}",
        ws,
    )
    return decision


# --- review sessions ----------------------------------------------------------------------------------------


def _attendees(org: Organization, people: Iterable[Membership]) -> list[Membership]:
    chosen = {m.pk: m for m in people}
    if any(m.organization_id != org.pk or not m.is_active for m in chosen.values()):
        raise ValidationError({"attendees": "Attendees must be active members of this organization."})
    return list(chosen.values())


def _started(org: Organization, now: datetime) -> str:
    local = timezone.localtime(now, org.tzinfo)
    return f"{local.day} {local:%b %Y, %H:%M}"


def _unique_title(org: Organization, title: str) -> str:
    """Titles tell sessions apart in lists, links and steering packs: a title taken already (two reviews in one
    minute, or the same title typed twice) gets the next number, "(2)", "(3)"..."""
    taken = set(ReviewSession.objects.for_org(org).filter(title__startswith=title).values_list("title", flat=True))
    n = 1
    while (candidate := title if n == 1 else f"{title} ({n})") in taken:
        n += 1
    return candidate


@transaction.atomic
def review_session_start(
    *, org: Organization, by: Membership, title: str = "", attendees: Iterable[Membership] = ()
) -> ReviewSession:
    """One review runs at a time; whoever starts it attends it."""
    if not may_decide(by) or by.organization_id != org.pk:
        raise PermissionDenied("Only executives and admins run a review.")
    people = _attendees(org, [by, *attendees])
    running = ReviewSession.objects.for_org(org).filter(closed_at=None).first()
    if running is not None:
        raise ValidationError(f"{running.title} is in progress: close it before starting another review.")
    now = timezone.now()
    try:
        with transaction.atomic():
            session = ReviewSession.objects.create(
                organization=org,
                title=_unique_title(org, title.strip() or f"Steering review {_started(org, now)}"),
                started_by=by.user,
                started_at=now,
            )
    except IntegrityError:  # another executive started one at the same moment
        raise ValidationError("Another review was started at the same moment: join it instead.") from None
    ReviewAttendee.objects.bulk_create(ReviewAttendee(organization=org, session=session, membership=m) for m in people)
    audit_log(
        org=org,
        actor=by.user,
        verb="review_session.started",
        obj=session,
        after={"title": session.title, "attendees": sorted(m.user.name for m in people)},
    )
    return session


@transaction.atomic
def review_session_set_attendees(
    *, session: ReviewSession, by: Membership, attendees: Iterable[Membership]
) -> ReviewSession:
    session = ReviewSession.objects.select_for_update().select_related("organization").get(pk=session.pk)
    if not may_decide(by) or by.organization_id != session.organization_id:
        raise PermissionDenied("Only executives and admins run a review.")
    if not session.is_open:
        raise ValidationError("This review session is closed: its minutes are final.")
    people = _attendees(session.organization, attendees)
    if not people:
        raise ValidationError({"attendees": "A review has at least one attendee."})
    before = sorted(session.attendees.values_list("user__name", flat=True))
    session.attendance.all().delete()
    ReviewAttendee.objects.bulk_create(
        ReviewAttendee(organization_id=session.organization_id, session=session, membership=m) for m in people
    )
    after = sorted(m.user.name for m in people)
    if after != before:
        audit_log(
            org=session.organization,
            actor=by.user,
            verb="review_session.attendees_set",
            obj=session,
            before={"attendees": before},
            after={"attendees": after},
        )
    return session


@transaction.atomic
def review_session_close(*, session: ReviewSession, by: Membership, summary: str = "") -> ReviewSession:
    """Its decisions are its minutes from now on: no decision joins a closed session."""
    session = ReviewSession.objects.select_for_update().select_related("organization").get(pk=session.pk)
    if not may_decide(by) or by.organization_id != session.organization_id:
        raise PermissionDenied("Only executives and admins run a review.")
    if not session.is_open:
        raise ValidationError("This review session is closed already.")
    session.closed_at, session.closed_by, session.summary = timezone.now(), by.user, summary.strip()
    session.save(update_fields=["closed_at", "closed_by", "summary"])
    audit_log(
        org=session.organization,
        actor=by.user,
        verb="review_session.closed",
        obj=session,
        after={"decisions": session.decisions.count(), "summary": session.summary},
    )
    return session


# --- the agenda -----------------------------------------------------------------------------------------------

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
    today = _today(org, now)
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
    kpis = list(
        kpis.select_related("team", "owner__user").annotate(
            last_decision_at=_latest(on_kpi, "decided_at"),
            last_closed_at=_latest(closed, "resolved_at"),
            risk_until=_latest(risks, "expected_by"),
            risk_at=_latest(risks, "decided_at"),
        )
    )
    ids = [k.pk for k in kpis]
    submitted = MitigationPath.objects.filter(workstream=OuterRef("pk"), state=MitigationPath.State.SUBMITTED)
    impact = DependencyReview.objects.filter(workstream=OuterRef("pk"), answer=DependencyReview.Answer.IMPACT).order_by(
        "-answered_at"
    )
    episodes = {
        ws.kpi_id: ws
        for ws in Workstream.objects.filter(kpi_id__in=ids, resolved_at=None).annotate(
            awaiting_at=_latest(submitted.order_by("-filed_at"), "filed_at"),
            approved=Exists(
                MitigationPath.objects.filter(workstream=OuterRef("pk"), state=MitigationPath.State.APPROVED)
            ),
            impact_at=_latest(impact, "answered_at"),
        )
    }
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


def _reasons(
    kpi: Kpi, ws: Workstream | None, tz: tzinfo, today: date, now: datetime
) -> tuple[list[Reason], date | None]:
    """Why the KPI needs a decision, each reason with the time it arose and whether a decision answered it since."""
    decided = max((t for t in (kpi.last_decision_at, kpi.last_closed_at) if t is not None), default=None)
    # An accepted risk of this episode (or, without one, of the KPI) holds its reasons until the day it ends.
    risk = kpi.risk_until if kpi.risk_until and (ws is None or kpi.risk_at >= ws.opened_at) else None
    running = risk if risk is not None and risk > today else None
    ended = midnight(risk, tz) if risk is not None and running is None else None
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
        reasons.append(reason("risk_expired", f"The risk accepted until {risk:%d %b %Y} has run out", ended))
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


# --- the decision log -----------------------------------------------------------------------------------------


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
        deadline = midnight(d.expected_by + timedelta(days=1), tz) if d.expected_by else None
        status = d.kpi.get_status_display().lower()
        if recovered is not None:
            local = timezone.localtime(recovered, tz)
            day = f"{local.day} {local:%b %Y}"
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
            result[d.pk] = Outcome("missed", f"Missed: still {status} after {_day(d.expected_by)}")
        elif deadline is not None:
            result[d.pk] = Outcome("due", f"Expected on track by {_day(d.expected_by)}; now {status}")
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
