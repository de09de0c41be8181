"""Who may decide in an episode and how a decision is recorded, below every service that decides.

`authority` gathers the facts of one decision (who has an interest in it, who else a case makes eligible) and asks
governance.access.decision_authority, the one rule: the services enforce its answer and the pages, their htmx
partials and the API show or refuse buttons with the same answer. `decision_record` writes the Decision row that
every decision leaves, wherever it was taken (escalations.workstreams.services for the workstream page and the API,
escalations.decisions.services for the review agenda); `expected_day` is the one check of an expected recovery date.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from escalations.engine.blocks import event
from escalations.models import (
    Decision,
    DependencyReview,
    MitigationAction,
    MitigationPath,
    ReviewSession,
    Task,
    Workstream,
)
from governance.access import SELF_APPROVED, Authority, decision_authority, decision_reason
from governance.models import Membership, Organization
from governance.services.audit import audit_log
from scorecards.models import Kpi, OwnershipTransfer

EXPECTED_DAY = "The expected recovery must be a day after today."


def expected_day(
    day: date | None, *, org: Organization, now: datetime | None = None, field: str = "expected_by"
) -> None:
    """An expected recovery (the owner's path, an executive's "expect on track by") lies after today in the
    organization's calendar: a day that has come is a result, not an expectation."""
    if day is not None and day <= timezone.localdate(now or timezone.now(), org.tzinfo):
        raise ValidationError({field: EXPECTED_DAY})


def authority(
    kind: str,
    *,
    by: Membership,
    kpi: Kpi | None = None,
    workstream: Workstream | None = None,
    path: MitigationPath | None = None,
    review: DependencyReview | None = None,
    task: Task | None = None,
    escalated: Collection[int] | None = None,
    filers: Collection[int] | None = None,
) -> Authority:
    """May `by` take a decision of `kind` (governance.access.DECISION_ROLES) on this KPI, episode, path or review?
    A page listing many episodes passes what it read for all of them at once: the memberships each episode
    `escalated` to, the users who `filers` paths in it."""
    if kind == "path_review":
        ws = path.workstream
        if escalated is None:
            escalated = set(ws.tasks.filter(kind=Task.Kind.ESCALATION).values_list("assignee_id", flat=True))
        return decision_authority(kind=kind, by=by, interested={ws.kpi.owner.user_id, path.filed_by_id}, also=escalated)
    if kind in ("workstream_close", "risk_accept"):
        if filers is None:
            filers = set(workstream.paths.values_list("filed_by_id", flat=True))
        return decision_authority(kind=kind, by=by, interested={workstream.kpi.owner.user_id, *filers})
    if kind == "review_no_impact":
        # The downstream owner assesses their own KPI; whoever else answers does so on their behalf, which the
        # owners of the upstream KPIs that caused the review may not.
        upstream = set(review.signals.values_list("upstream__owner__user_id", flat=True))
        # Whoever a task of this review went to answers it: the downstream owner, and each escalation's assignee.
        assignees = set(review.tasks.values_list("assignee_id", flat=True))
        assignees |= {t.assignee_id for t in (task, review.task) if t is not None}
        return decision_authority(kind=kind, by=by, interested=upstream - {review.kpi.owner.user_id}, also=assignees)
    if kind == "target_change":
        return decision_authority(kind=kind, by=by, interested={kpi.owner.user_id})
    return decision_authority(kind=kind, by=by)


def require(authority: Authority) -> Authority:
    if not authority:
        raise PermissionDenied(authority.refusal)
    return authority


def _session(session: ReviewSession | None, kpi: Kpi) -> None:
    if session is None:
        return
    # Locked: a decision never lands in a session that another request is closing.
    stored = ReviewSession.objects.select_for_update().filter(pk=session.pk).first()
    if stored is None or stored.organization_id != kpi.organization_id:
        raise PermissionDenied("This review session belongs to another organization.")
    if not stored.is_open:
        raise ValidationError("This review session is closed: its minutes are final.")


@transaction.atomic
def decision_record(
    *,
    kind: str,
    kpi: Kpi,
    by: Membership,
    authority: Authority,
    reason: str,
    session: ReviewSession | None = None,
    workstream: Workstream | None = None,
    payload: dict | None = None,
    expected_by: date | None = None,
    path: MitigationPath | None = None,
    action: MitigationAction | None = None,
    transfer: OwnershipTransfer | None = None,
    now: datetime | None = None,
    timeline: bool = True,
) -> Decision:
    """The Decision row, its audit event and its line on the workstream's timeline (`timeline=False`: the service's
    own line tells it already). The kind's own service has checked `authority` and made the change it describes, in
    the same transaction."""
    if not authority:
        raise PermissionDenied(authority.refusal)
    if kpi.organization_id != by.organization_id:
        raise PermissionDenied("This KPI belongs to another organization.")
    if kind not in Decision.Kind.values:
        raise ValidationError({"kind": f"Unknown kind of decision: {kind}."})
    reason = decision_reason(reason)
    _session(session, kpi)
    now = now or timezone.now()
    decision = Decision.objects.create(
        organization_id=kpi.organization_id,
        kind=kind,
        kpi=kpi,
        workstream=workstream,
        session=session,
        decided_by=by.user,
        decided_at=now,
        reason=reason,
        kpi_status=Kpi.objects.filter(pk=kpi.pk).values_list("status", flat=True).get(),
        payload=payload or {},
        expected_by=expected_by,
        path=path,
        action=action,
        transfer=transfer,
        self_approved=authority.self_approved,
    )
    audit_log(
        org=by.organization,
        actor=by.user,
        verb=f"decision.{kind}",
        obj=decision,
        after={
            "kpi": kpi.key,
            "reason": reason,
            "expected_by": expected_by.isoformat() if expected_by else None,
            "session": session.pk if session else None,
            "self_approved": authority.self_approved,
            **(payload or {}),
        },
    )
    if workstream is not None and timeline:
        by_line = f" by {by.user.name}" + (f" in {session.title}" if session else "")
        own = f" ({SELF_APPROVED})" if authority.self_approved else ""
        event(workstream, now, "decision", f"{decision.get_kind_display()}{by_line}{own}: {reason}", by.user)
    return decision
