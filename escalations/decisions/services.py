"""Executive reviews and the decision log: every red item ends in a recorded decision.

Writes. Each kind of decision is one service that makes its change through the code that owns it (the path review of
escalations.workstreams.services, the KPI update and the transfer request and decision of scorecards.services, the
escalation state the sweeps read) and records a Decision with its reason in the same transaction
(escalations.engine.authority.decision_record), audited and on the workstream's timeline. Who may decide is the
decision's authority (escalations.engine.authority.authority: four eyes). A review session groups the decisions taken
while it is open: its minutes.

Reads. `agenda` composes what needs a decision, in a constant number of queries: mitigation paths awaiting
review, exhausted escalations, off-track KPIs without an approved path, dependency reviews answered "impact",
stale KPIs, and risks accepted until a day that has come. An item stays on the agenda until a decision on its KPI
is recorded after the item's reason arose (a path awaiting review stays until it is approved or rejected).
`outcomes` says what happened next: did the KPI recover by the decision's expected date?"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from escalations.engine import transfers
from escalations.engine.authority import authority, decision_record, expected_day, require
from escalations.engine.blocks import event, mitigated, workstream_url
from escalations.models import (
    Decision,
    MitigationAction,
    MitigationPath,
    ReviewSession,
    Task,
    Workstream,
)
from escalations.notify.fanout import Message, notify
from escalations.workstreams import services
from governance import formats
from governance.access import DECISION_ROLES, decision_reason
from governance.models import Membership
from governance.services.audit import audit_log, snapshot
from scorecards import leavers
from scorecards import services as scorecard_services
from scorecards.evaluation.thresholds import settings_errors
from scorecards.models import Kpi, OwnershipTransfer

DECIDERS = DECISION_ROLES["risk_accept"]  # who decides on the agenda and runs a review: executives and admins


OPEN_TASKS = [Task.State.OPEN, Task.State.ACKNOWLEDGED]


MAX_RISK = timedelta(days=366)  # a risk is accepted for a year at most: then it comes back to a review


TARGET_FIELDS = ["target_value", "target_by", "thresholds"]


SESSION_ACTIONS = 60  # a session lists the soonest due open actions; the workstream pages have the rest


def may_decide(membership: Membership | None) -> bool:
    return membership is not None and membership.is_active and membership.role in DECIDERS


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
    today = formats.local_day(timezone.now(), ws.organization.tzinfo)
    if until <= today:
        raise ValidationError({"until": "Accept the risk until a day after today."})
    if until - today > MAX_RISK:
        raise ValidationError({"until": "A risk is accepted for a year at most; review it again before then."})
    now = timezone.now()
    resumes = formats.midnight(until, ws.organization.tzinfo)
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
        f"Risk accepted until {formats.day(until, weekday=True)}; unless {kpi.name} is on track by then, {then}",
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
            "escalation_resumes_at": timezone.localtime(resumes, ws.organization.tzinfo).isoformat()
            if escalates
            else None,
            "escalation_before": before,
            "escalation_tasks_answered": answered,
        },
    )
    _tell(
        kpi,
        [kpi.owner],
        f"Risk on {kpi.name} accepted until {formats.day(until)}",
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
    transfers.close_tasks(transfer=decided, actor=by.user, now=decided.decided_at)
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


@transaction.atomic
def decision_take_transfer(*, transfer: OwnershipTransfer, by: Membership, reason: str) -> Decision:
    """A leaver's KPI accepted from an inbox task (escalations.engine.transfers): its addressee approves the
    transfer; an admin or executive it was escalated to takes the KPI themselves. Its tasks are done either way."""
    stored = OwnershipTransfer.objects.select_related("kpi", "organization", "from_owner__user").get(pk=transfer.pk)
    require(scorecard_services.transfer_authority(stored, by))
    taken = leavers.take_over(transfer=stored, by=by)
    if taken.pk != stored.pk:
        transfers.close_tasks(transfer=stored, actor=by.user, state=Task.State.DONE)
    return decision_transfer(transfer=taken, by=by, approve=True, reason=reason)


def action_path(ws: Workstream) -> MitigationPath | None:
    """The path an assigned action joins: the approved one being carried out, else the one awaiting review."""
    paths = {p.state: p for p in ws.paths.exclude(state=MitigationPath.State.REJECTED).order_by("filed_at", "id")}
    return paths.get(MitigationPath.State.APPROVED) or paths.get(MitigationPath.State.SUBMITTED)


def _action_errors(
    ws: Workstream, path: MitigationPath | None, description: str, owner: Membership, due: date
) -> dict[str, list[str]]:
    """Every reason an assigned action is refused, by field."""
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
    if due < formats.local_day(timezone.now(), ws.organization.tzinfo):
        errors["due"] = ["The action cannot be due in the past."]
    return errors


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
    if errors := _action_errors(ws, path, description, owner, due):
        raise ValidationError(errors)
    action = MitigationAction.objects.create(
        organization_id=ws.organization_id, path=path, description=description.strip(), owner=owner, due=due
    )
    now = timezone.now()
    event(
        ws,
        now,
        "action_assigned",
        f"Action for {owner.user.name}, due {formats.day(due, year=False, weekday=True)}: {action.description}",
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
        f"{owner.user.name}, due {formats.day(due, year=False, weekday=True)}. {by.user.name}: {decision.reason}",
        f"decision{decision.pk}",
        ws,
    )
    return decision
