"""What people do in an episode: the owner files a mitigation path, a reviewer decides on it, an assignee
acknowledges, an action owner reports progress, an executive closes. Each write is audited and on the timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from escalations.engine import authority as deciding
from escalations.engine import timing
from escalations.engine.authority import expected_day
from escalations.engine.blocks import add_task, event, mitigated, workstream_url
from escalations.engine.episodes import resolve
from escalations.engine.reviews import answers
from escalations.engine.timing import Policy
from escalations.models import (
    Decision,
    DependencyReview,
    MitigationAction,
    MitigationPath,
    ReviewSession,
    Task,
    Workstream,
)
from escalations.notify.channels import slack
from escalations.notify.fanout import Message, notify
from governance import formats
from governance.access import SELF_APPROVED, decision_reason
from governance.hours import business_hours
from governance.models import Membership, Role
from governance.services.audit import audit_log
from scorecards.models import Kpi


@dataclass(frozen=True)
class ActionDraft:
    description: str
    owner: Membership
    due: date


def may_file(workstream: Workstream, membership: Membership) -> bool:
    return workstream.kpi.owner_id == membership.pk


def may_update_action(action: MitigationAction, membership: Membership) -> bool:
    """The action's owner reports on it; so does the KPI's owner, who answers for the whole path."""
    return membership.pk in (action.owner_id, action.path.workstream.kpi.owner_id)


def workstream_locked(workstream: Workstream) -> Workstream:
    """The workstream, locked for a change, refused once it is resolved."""
    # The workstream and its KPI (which the status-change sweep locks too), not the organization, owner and user
    # joined for display: a FOR UPDATE on the organization would hold every insert that references it.
    locked = (
        Workstream.objects.select_for_update(of=("self", "kpi"))
        .select_related("organization", "kpi__owner__user")
        .get(pk=workstream.pk)
    )
    if not locked.is_open:
        raise ValidationError("This workstream is resolved.")
    return locked


def _path_errors(
    ws: Workstream, root_cause: str, expected_recovery: date, actions: list[ActionDraft], now: datetime
) -> dict[str, list[str]]:
    """Every reason a filing is refused, by field, so that the form shows them all at once."""
    today = timezone.localdate(now, ws.organization.tzinfo)
    errors: dict[str, list[str]] = {}
    if not root_cause.strip():
        errors["root_cause"] = ["Say what caused the breach."]
    try:
        expected_day(expected_recovery, org=ws.organization, now=now, field="expected_recovery")
    except ValidationError as e:
        errors |= e.message_dict
    if not actions:
        errors["actions"] = [
            "An explanation is not a mitigation path: add at least one action with an owner and a date."
        ]
    for i, action in enumerate(actions, 1):
        if not action.description.strip():
            errors.setdefault("actions", []).append(f"Action {i} needs a description.")
        if action.owner.organization_id != ws.organization_id or not action.owner.is_active:
            errors.setdefault("actions", []).append(f"Action {i}'s owner must be an active member.")
        if action.due < today:
            errors.setdefault("actions", []).append(f"Action {i} is due in the past.")
    if ws.paths.filter(state=MitigationPath.State.SUBMITTED).exists():
        errors.setdefault("__all__", []).append("A path already awaits review; it must be approved or rejected first.")
    return errors


def _path_reviewers(ws: Workstream, by: Membership) -> list[Membership]:
    """The people escalation reached review a path; before any escalation, the executives (else the admins) do.
    Never the owner or the filer: four eyes."""
    interested = {ws.kpi.owner.user_id, by.user_id}
    escalated = ws.tasks.filter(kind=Task.Kind.ESCALATION).select_related("assignee__user")
    reviewers = [t.assignee for t in escalated if t.assignee.user_id not in interested]
    for role in (Role.EXECUTIVE, Role.ADMIN):
        if not reviewers:
            members = Membership.objects.filter(organization_id=ws.organization_id, role=role, is_active=True)
            reviewers = list(members.exclude(user_id__in=interested))
    return reviewers


@transaction.atomic
def mitigation_path_file(
    *,
    workstream: Workstream,
    by: Membership,
    root_cause: str,
    expected_recovery: date,
    actions: list[ActionDraft],
    now: datetime | None = None,  # when it was filed: the demo files its past episodes' paths in their weeks
) -> MitigationPath:
    ws = workstream_locked(workstream)
    if not may_file(ws, by):
        raise PermissionDenied("Only the KPI's owner files its mitigation path.")
    now = now or timezone.now()
    errors = _path_errors(ws, root_cause, expected_recovery, actions, now)
    if errors:
        raise ValidationError(errors)
    path = MitigationPath.objects.create(
        organization_id=ws.organization_id,
        workstream=ws,
        root_cause=root_cause.strip(),
        expected_recovery=expected_recovery,
        filed_by=by.user,
        filed_at=now,
    )
    MitigationAction.objects.bulk_create(
        MitigationAction(
            organization_id=ws.organization_id, path=path, description=a.description.strip(), owner=a.owner, due=a.due
        )
        for a in actions
    )
    ws.tasks.filter(kind=Task.Kind.MITIGATION, state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED]).update(
        state=Task.State.DONE, done_at=now
    )
    event(ws, now, "path_filed", f"Mitigation path filed with {len(actions)} action(s): {path.root_cause}", by.user)
    audit_log(
        org=ws.organization, actor=by.user, verb="mitigation_path.filed", obj=path, after={"actions": len(actions)}
    )
    reviewers = _path_reviewers(ws, by)
    notify(
        recipients=list({m.pk: m for m in reviewers}.values()),
        message=Message(
            kind="path_filed",
            subject=f"Mitigation path for {ws.kpi.name} awaits review",
            body=(
                f"{by.user.name}: {path.root_cause}\n\n{len(actions)} action(s); "
                f"recovery expected {formats.day(expected_recovery, year=False)}."
            ),
            url=workstream_url(ws),
        ),
        dedup_key=f"{ws.organization_id}:{ws.kpi_id}:{ws.pk}:path{path.pk}",
        workstream=ws,
        now=now,
    )
    return path


def _follow_review(ws: Workstream, path: MitigationPath, approve: bool, now: datetime) -> None:
    """An approval stops the episode's escalation and answers its open escalation tasks; a rejection gives the
    owner a new mitigation task."""
    if approve:
        ws.next_escalation_at = None
        ws.save(update_fields=["next_escalation_at"])
        ws.tasks.filter(kind=Task.Kind.ESCALATION, state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED]).update(
            state=Task.State.DONE, done_at=now
        )
    else:
        policy = Policy.from_json(ws.policy)
        add_task(ws, Task.Kind.MITIGATION, ws.kpi.owner, now + policy.mitigation_due, now, f"rejected{path.pk}")


@transaction.atomic
def mitigation_path_review(
    *,
    path: MitigationPath,
    by: Membership,
    approve: bool,
    comment: str,
    expected_by: date | None = None,
    session: ReviewSession | None = None,
    now: datetime | None = None,
) -> MitigationPath:
    """Approve (escalation stops) or reject (back to the owner) with a reason, recorded as a Decision wherever it
    was taken; the follow-up of an approval is the path's expected recovery unless `expected_by` says otherwise."""
    ws = workstream_locked(path.workstream)
    path = MitigationPath.objects.select_for_update().get(pk=path.pk)
    path.workstream = ws
    allowed = deciding.require(deciding.authority("path_review", by=by, path=path))
    if path.state != MitigationPath.State.SUBMITTED:
        raise ValidationError(f"This path is already {path.get_state_display().lower()}.")
    comment = decision_reason(comment)
    expected_day(expected_by, org=ws.organization, now=now)
    now = now or timezone.now()
    path.state = MitigationPath.State.APPROVED if approve else MitigationPath.State.REJECTED
    path.reviewed_by, path.reviewed_at, path.review_comment = by.user, now, comment
    path.save(update_fields=["state", "reviewed_by", "reviewed_at", "review_comment"])
    verdict = "approved" if approve else "rejected"
    # One line on the timeline for the review and its decision.
    where = f" in {session.title}" if session else ""
    own = f" ({SELF_APPROVED})" if allowed.self_approved else ""
    event(ws, now, f"path_{verdict}", f"Path {verdict} by {by.user.name}{where}{own}: {comment}", by.user)
    deciding.decision_record(
        kind=Decision.Kind.PATH_APPROVED if approve else Decision.Kind.PATH_REJECTED,
        kpi=ws.kpi,
        by=by,
        authority=allowed,
        reason=comment,
        session=session,
        workstream=ws,
        path=path,
        expected_by=(expected_by or path.expected_recovery) if approve else None,
        payload={"root_cause": path.root_cause, "expected_recovery": path.expected_recovery.isoformat()},
        now=now,
        timeline=False,
    )
    audit_log(
        org=ws.organization, actor=by.user, verb=f"mitigation_path.{verdict}", obj=path, after={"comment": comment}
    )
    _follow_review(ws, path, approve, now)
    slack.refresh_on_commit(org_id=ws.organization_id, paths=[path.pk], tasks=ws.tasks.values("pk"))
    notify(
        recipients=[ws.kpi.owner],
        message=Message(
            kind=f"path_{verdict}",
            subject=f"Your mitigation path for {ws.kpi.name} was {verdict}",
            body=f"{by.user.name}: {comment}",
            url=workstream_url(ws),
        ),
        dedup_key=f"{ws.organization_id}:{ws.kpi_id}:{ws.pk}:review{path.pk}",
        workstream=ws,
        now=now,
    )
    return path


@transaction.atomic
def task_acknowledge(*, task: Task, by: Membership) -> Task:
    """ "I am on it": an escalation pauses for the policy's ack_timeout, then the same level is notified again."""
    if task.assignee_id != by.pk:
        raise PermissionDenied("Only the task's assignee acknowledges it.")
    task = Task.objects.select_for_update().get(pk=task.pk)
    if task.state != Task.State.OPEN:
        raise ValidationError(f"This task is {task.get_state_display().lower()}.")
    now = timezone.now()
    task.state, task.acknowledged_at = Task.State.ACKNOWLEDGED, now
    task.save(update_fields=["state", "acknowledged_at"])
    if task.workstream_id:
        ws = workstream_locked(task.workstream)
        event(ws, now, "acknowledged", f"{by.user.name} acknowledged: on it", by.user)
        if task.kind == Task.Kind.ESCALATION and _escalating(ws) and not mitigated(ws):
            ws.next_escalation_at, ws.renotify = _reminder(ws, now), True
            ws.save(update_fields=["next_escalation_at", "renotify"])
            _due_with_the_next_level(ws.tasks, ws)
    elif task.review_id and task.kind == Task.Kind.ESCALATION:
        # A review's escalation pauses as a workstream's does; then the same level is notified again.
        review = (
            DependencyReview.objects.select_for_update(of=("self",), no_key=True)
            .select_related("organization")
            .get(pk=task.review_id)
        )
        if review.is_open and _escalating(review):
            review.next_escalation_at, review.renotify = _reminder(review, now), True
            review.save(update_fields=["next_escalation_at", "renotify"])
            _due_with_the_next_level(review.tasks, review)
    audit_log(org=by.organization, actor=by.user, verb="task.acknowledged", obj=task)
    slack.refresh_on_commit(org_id=task.organization_id, tasks=[task.pk])
    return task


def _escalating(episode: Workstream | DependencyReview) -> bool:
    """Whether an acknowledgement has a next step to pause: an exhausted, stopped or not yet escalated episode has
    none, and acknowledging must not bring one back."""
    return episode.exhausted_at is None and episode.next_escalation_at is not None and episode.level > 0


def _reminder(episode: Workstream | DependencyReview, now: datetime) -> datetime:
    policy = Policy.from_json(episode.policy)
    return timing.reminder(policy, episode.level, now, business_hours(episode.organization))


def _due_with_the_next_level(tasks, episode: Workstream | DependencyReview) -> None:
    """An escalation task is due when the next level would be: after an acknowledgement, once the reminded level's
    wait has run anew, so the inbox's due time and the next step agree."""
    policy, hours = Policy.from_json(episode.policy), business_hours(episode.organization)
    position = timing.Position(episode.level, episode.escalation_pass)
    then = timing.renotify(policy, position, episode.next_escalation_at, hours).then
    tasks.filter(kind=Task.Kind.ESCALATION, state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED]).update(due_at=then)


def may_answer(task: Task, membership: Membership) -> bool:
    """A review task's assignee answers its reviews; so does anyone a review's escalation reached, from their task."""
    is_review = task.kind == Task.Kind.DEPENDENCY_REVIEW or task.review_id is not None
    return is_review and task.assignee_id == membership.pk


def _review_to_answer(task: Task, review_id: int | None) -> DependencyReview:
    """The review the answer is about, locked, refused when it or the task was settled meanwhile."""
    part = answers.part_to_answer(task, review_id)
    # The downstream KPI's row first, as the propagation sweep takes it: signals and answers never interleave.
    Kpi.objects.select_for_update(no_key=True).filter(pk=part.kpi_id).exists()
    review = (
        DependencyReview.objects.select_for_update(of=("self",), no_key=True)
        .select_related("organization", "kpi__organization", "kpi__owner__user", "kpi__team")
        .get(pk=part.pk)
    )
    if not review.is_open:
        answer = review.get_answer_display().lower()
        raise ValidationError(f"The dependency review of {review.kpi.name} was answered already ({answer}).")
    if not task.is_open:
        raise ValidationError(f"This task is {task.get_state_display().lower()}.")
    return review


@transaction.atomic
def dependency_review_answer(
    *,
    task: Task,
    by: Membership,
    impact: bool,
    reason: str,
    review_id: int | None = None,
    now: datetime | None = None,
) -> DependencyReview:
    """ "Impact" opens a preventive workstream on the review's downstream KPI (or joins its open one); "no impact"
    needs a reason. An owner's review task lists one review per affected KPI, each answered on its own (`review_id`,
    which may be left out when one is unanswered); the answered review's escalation stops, and the task is done once
    every review it lists is answered."""
    if task.kind != Task.Kind.DEPENDENCY_REVIEW and task.review_id is None:
        raise ValidationError("Only a dependency review (or its escalation) is answered.")
    if not may_answer(task, by):
        raise PermissionDenied("Only the task's assignee answers this dependency review.")
    reason = reason.strip()
    if not impact:
        reason = decision_reason(reason)
    review = _review_to_answer(task, review_id)
    allowed = None
    if not impact:
        allowed = deciding.require(deciding.authority("review_no_impact", by=by, review=review, task=task))
    now = now or timezone.now()
    review.answer = DependencyReview.Answer.IMPACT if impact else DependencyReview.Answer.NO_IMPACT
    review.answer_reason, review.answered_at, review.answered_by = reason, now, by.user
    review.next_escalation_at = None
    if impact:
        review.workstream = answers.open_preventive(review, by, reason, now)
    review.save(
        update_fields=["answer", "answer_reason", "answered_at", "answered_by", "next_escalation_at", "workstream"]
    )
    review.tasks.filter(state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED]).update(state=Task.State.DONE, done_at=now)
    if review.task_id is not None:
        answers.settle_task(review.task_id, now)
    said = "impact: a preventive workstream is open" if impact else f"no impact: {reason}"
    answers.tell_upstream_of_answer(
        review, by.user, f"{by.user.name} answered the dependency review of {review.kpi.name}: {said}", now
    )
    audit_log(
        org=review.organization,
        actor=by.user,
        verb="dependency_review.answered",
        obj=review,
        after={"impact": impact, "reason": reason, "workstream": review.workstream_id},
    )
    slack.refresh_on_commit(org_id=review.organization_id, reviews=[review.pk], tasks=[task.pk])
    if allowed is not None:
        deciding.decision_record(
            kind=Decision.Kind.REVIEW_NO_IMPACT,
            kpi=review.kpi,
            by=by,
            authority=allowed,
            reason=reason,
            payload={"review": review.pk, "upstream": sorted({s.upstream.key for s in review.signals.all()})},
            now=now,
        )
    return review


@transaction.atomic
def action_update(*, action: MitigationAction, by: Membership, progress: str, done: bool) -> MitigationAction:
    ws = action.path.workstream
    if not may_update_action(action, by):
        raise PermissionDenied("Only the action's owner or the KPI's owner reports on an action.")
    action = MitigationAction.objects.select_for_update().get(pk=action.pk)
    now = timezone.now()
    action.progress = progress.strip() or action.progress
    if done and action.done_at is None:
        action.done_at = now
        action.tasks.filter(state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED]).update(
            state=Task.State.DONE, done_at=now
        )
    action.save(update_fields=["progress", "done_at"])
    event(
        ws,
        now,
        "action_done" if done else "action_progress",
        f"{action.description}: {action.progress or 'done'}",
        by.user,
    )
    audit_log(org=ws.organization, actor=by.user, verb="mitigation_action.updated", obj=action, after={"done": done})
    if ws.is_open and mitigated(ws):
        Workstream.objects.filter(pk=ws.pk).update(
            next_escalation_at=None
        )  # the overdue action that restarted it is done
    return action


@transaction.atomic
def workstream_close(*, workstream: Workstream, by: Membership, resolution: str, reason: str) -> Workstream:
    """An executive's decision ends the episode (not a recovery: that one the evaluator reports), recorded as a
    Decision with its resolution."""
    ws = workstream_locked(workstream)
    allowed = deciding.require(deciding.authority("workstream_close", by=by, workstream=ws))
    if resolution not in Workstream.Resolution.values or resolution == Workstream.Resolution.RECOVERED:
        raise ValidationError({"resolution": "Pick how the episode ends."})
    reason = decision_reason(reason)
    now = timezone.now()
    resolve(ws, now, resolution, reason, by.user, now)
    audit_log(
        org=ws.organization,
        actor=by.user,
        verb="workstream.closed",
        obj=ws,
        after={"resolution": resolution, "reason": reason},
    )
    deciding.decision_record(
        kind=Decision.Kind.WORKSTREAM_CLOSED,
        kpi=ws.kpi,
        by=by,
        authority=allowed,
        reason=reason,
        workstream=ws,
        payload={"resolution": resolution},
        now=now,
        timeline=False,  # the resolution's line says it
    )
    return ws
