"""What people do in an episode: the owner files a mitigation path, a reviewer decides on it, an assignee
acknowledges, an action owner reports progress, an executive closes. Each write is audited and on the timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from escalations.models import MitigationAction, MitigationPath, Task, Workstream
from escalations.notifications import Message, notify
from escalations.sweeps import add_task, event, mitigated, resolve, workstream_url
from escalations.timing import Policy
from governance.models import Membership, Role
from governance.services import audit_log


@dataclass(frozen=True)
class ActionDraft:
    description: str
    owner: Membership
    due: date


def may_review(workstream: Workstream, membership: Membership) -> bool:
    """Executives review every path; so does anyone an escalation task of this episode went to."""
    return (
        membership.role == Role.EXECUTIVE
        or workstream.tasks.filter(kind=Task.Kind.ESCALATION, assignee=membership).exists()
    )


def _locked(workstream: Workstream) -> Workstream:
    locked = (
        Workstream.objects.select_for_update().select_related("organization", "kpi__owner__user").get(pk=workstream.pk)
    )
    if not locked.is_open:
        raise ValidationError("This workstream is resolved.")
    return locked


@transaction.atomic
def mitigation_path_file(
    *, workstream: Workstream, by: Membership, root_cause: str, expected_recovery: date, actions: list[ActionDraft]
) -> MitigationPath:
    ws = _locked(workstream)
    if ws.kpi.owner_id != by.pk:
        raise PermissionDenied("Only the KPI's owner files its mitigation path.")
    today = timezone.localdate(timezone=ws.organization.tzinfo)
    errors: dict[str, list[str]] = {}
    if not root_cause.strip():
        errors["root_cause"] = ["Say what caused the breach."]
    if expected_recovery < today:
        errors["expected_recovery"] = ["The expected recovery cannot be in the past."]
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
    if errors:
        raise ValidationError(errors)
    path = MitigationPath.objects.create(
        organization_id=ws.organization_id,
        workstream=ws,
        root_cause=root_cause.strip(),
        expected_recovery=expected_recovery,
        filed_by=by.user,
    )
    MitigationAction.objects.bulk_create(
        MitigationAction(
            organization_id=ws.organization_id, path=path, description=a.description.strip(), owner=a.owner, due=a.due
        )
        for a in actions
    )
    now = timezone.now()
    ws.tasks.filter(kind=Task.Kind.MITIGATION, state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED]).update(
        state=Task.State.DONE, done_at=now
    )
    event(ws, now, "path_filed", f"Mitigation path filed with {len(actions)} action(s): {path.root_cause}", by.user)
    audit_log(
        org=ws.organization, actor=by.user, verb="mitigation_path.filed", obj=path, after={"actions": len(actions)}
    )
    # The people escalation reached review it; before any escalation, the executives do.
    reviewers = [t.assignee for t in ws.tasks.filter(kind=Task.Kind.ESCALATION).select_related("assignee__user")]
    if not reviewers:
        reviewers = list(
            Membership.objects.filter(organization_id=ws.organization_id, role=Role.EXECUTIVE, is_active=True)
        )
    notify(
        recipients=list({m.pk: m for m in reviewers}.values()),
        message=Message(
            kind="path_filed",
            subject=f"Mitigation path for {ws.kpi.name} awaits review",
            body=(
                f"{by.user.name}: {path.root_cause}\n\n{len(actions)} action(s); "
                f"recovery expected {expected_recovery:%d %b}."
            ),
            url=workstream_url(ws),
        ),
        dedup_key=f"{ws.organization_id}:{ws.kpi_id}:{ws.pk}:path{path.pk}",
        workstream=ws,
        now=now,
    )
    return path


@transaction.atomic
def mitigation_path_review(*, path: MitigationPath, by: Membership, approve: bool, comment: str) -> MitigationPath:
    ws = _locked(path.workstream)
    if not may_review(ws, by):
        raise PermissionDenied("Only an executive or someone this episode escalated to reviews its path.")
    path = MitigationPath.objects.select_for_update().get(pk=path.pk)
    if path.state != MitigationPath.State.SUBMITTED:
        raise ValidationError(f"This path is already {path.get_state_display().lower()}.")
    if not approve and not comment.strip():
        raise ValidationError({"comment": "Say why the path is rejected, so the owner can improve it."})
    now = timezone.now()
    path.state = MitigationPath.State.APPROVED if approve else MitigationPath.State.REJECTED
    path.reviewed_by, path.reviewed_at, path.review_comment = by.user, now, comment.strip()
    path.save(update_fields=["state", "reviewed_by", "reviewed_at", "review_comment"])
    verdict = "approved" if approve else "rejected"
    event(ws, now, f"path_{verdict}", f"Path {verdict} by {by.user.name}{': ' + comment if comment else ''}", by.user)
    audit_log(
        org=ws.organization, actor=by.user, verb=f"mitigation_path.{verdict}", obj=path, after={"comment": comment}
    )
    if approve:
        # Escalation stops for the episode; its open escalation tasks are answered.
        ws.next_escalation_at = None
        ws.save(update_fields=["next_escalation_at"])
        ws.tasks.filter(kind=Task.Kind.ESCALATION, state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED]).update(
            state=Task.State.DONE, done_at=now
        )
    else:
        policy = Policy.from_json(ws.policy)
        add_task(ws, Task.Kind.MITIGATION, ws.kpi.owner, now + policy.mitigation_due, now, f"rejected{path.pk}")
    notify(
        recipients=[ws.kpi.owner],
        message=Message(
            kind=f"path_{verdict}",
            subject=f"Your mitigation path for {ws.kpi.name} was {verdict}",
            body=comment or f"{by.user.name} {verdict} it.",
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
        ws = _locked(task.workstream)
        event(ws, now, "acknowledged", f"{by.user.name} acknowledged: on it", by.user)
        if task.kind == Task.Kind.ESCALATION and not mitigated(ws):
            ws.next_escalation_at, ws.renotify = now + Policy.from_json(ws.policy).ack_timeout, True
            ws.save(update_fields=["next_escalation_at", "renotify"])
    audit_log(org=by.organization, actor=by.user, verb="task.acknowledged", obj=task)
    return task


@transaction.atomic
def action_update(*, action: MitigationAction, by: Membership, progress: str, done: bool) -> MitigationAction:
    ws = action.path.workstream
    if by.pk not in (action.owner_id, ws.kpi.owner_id):
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
    """An executive's decision ends the episode (not a recovery: that one the evaluator reports)."""
    if by.role != Role.EXECUTIVE:
        raise PermissionDenied("Only an executive closes a workstream.")
    if resolution not in Workstream.Resolution.values or resolution == Workstream.Resolution.RECOVERED:
        raise ValidationError({"resolution": "Pick how the episode ends."})
    if not reason.strip():
        raise ValidationError({"reason": "A decision needs its reason on record."})
    ws = _locked(workstream)
    now = timezone.now()
    resolve(ws, now, resolution, reason.strip(), by.user, now)
    audit_log(
        org=ws.organization,
        actor=by.user,
        verb="workstream.closed",
        obj=ws,
        after={"resolution": resolution, "reason": reason},
    )
    return ws
