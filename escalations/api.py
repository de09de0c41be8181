"""API endpoints for workstreams, tasks and notifications (API.md). A personal token acts as its member, with
exactly that member's permissions; an organization token reads, but does not act for a person."""

from __future__ import annotations

from datetime import date, datetime

from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema
from pydantic import StrictBool

from escalations.models import Decision, DependencyReview, MitigationPath, Notification, Task, Workstream
from escalations.workstreams import selectors, services
from governance.api import PERSONAL, ApiError, Errors, Line, Moment, Text, TokenAuth
from governance.models import Membership, Scope
from scorecards.api import page_of
from scorecards.models import Kpi
from scorecards.selectors import visible_kpis

router = Router(tags=["workstreams"])


class ActionOut(Schema):
    description: str
    owner: str
    due: date
    done: bool


class MitigationOut(Schema):
    state: str
    root_cause: str
    expected_recovery: date
    filed_at: datetime
    actions: list[ActionOut]


class UpcomingOut(Schema):
    kind: str = Field(description="escalation (a level is notified) | exhaustion (escalation runs out) | reminder")
    at: datetime
    who: list[str] = Field(description="the names of the people it reaches (empty for exhaustion)")
    level: int = Field(description="the level notified; 0 for a reminder or exhaustion")


class WorkstreamOut(Schema):
    id: int
    kpi: str
    kind: str
    state: str = Field(description="open | resolved")
    severity: str
    opened_at: datetime
    resolved_at: datetime | None
    resolution: str
    escalation_level: int
    escalation_pass: int
    exhausted: bool
    mitigation: MitigationOut | None = Field(description="The latest mitigation path, or null")
    next_step: UpcomingOut | None = Field(
        description="The next escalation step (who, when), or null: resolved, exhausted, stopped by an approved path, "
        "waiting on upstream, or no policy"
    )
    reminder: UpcomingOut | None = Field(
        description="After an acknowledgement: when the acknowledged level is reminded (the next step comes after it)"
    )
    next_step_text: str = Field(description="Both in words, in the organization's time zone, as the pages say it")


class ActionIn(Schema):
    description: Line
    owner: Line = Field(description="email of an active member")
    due: date


class MitigationIn(Schema):
    root_cause: Text
    expected_recovery: date
    actions: list[ActionIn]


class ReviewIn(Schema):
    decision: Line = Field(description="approve | reject")
    comment: Text = Field("", description="the reason, required: the decision log records it")
    reason: Text = Field("", description="the same as comment (either one)")


class CloseIn(Schema):
    resolution: Line = Field(description="target_changed | accepted_risk | no_longer_relevant")
    reason: Text


class SignalOut(Schema):
    upstream: str = Field(description="the upstream KPI's key")
    kind: str = Field(description="status | surge")
    at: datetime
    cause: str
    value: float | None
    trend: str
    throttled: bool = Field(description="reached this KPI within the edge's lag of an earlier review: no new review")


class ReviewOut(Schema):
    id: int
    kpi: str = Field(description="the downstream KPI's key: each KPI a review task lists is answered on its own")
    state: str = Field(description="open | impact | no_impact")
    reason: str
    answered_at: datetime | None
    workstream: int | None = Field(description="the workstream an impact answer opened (or joined)")
    due_at: datetime
    escalation_level: int
    escalation_pass: int
    exhausted: bool
    signals: list[SignalOut]


class TaskOut(Schema):
    id: int
    kind: str
    assignee: str
    kpi: str
    workstream: int | None
    level: int
    escalation_pass: int = Field(alias="pass")  # "pass" is a Python keyword
    state: str
    due_at: datetime
    created_at: datetime
    review: ReviewOut | None = Field(
        None, description="the first of `reviews` (a dependency review task may list several), or null"
    )
    reviews: list[ReviewOut] = Field(
        [],
        description="a dependency review task: one review per downstream KPI the upstream changes reached within 10 "
        "minutes (all of the owner's); an escalation task: the review it escalates",
    )


class AnswerIn(Schema):
    impact: StrictBool
    reason: Text = ""
    kpi: Line | None = Field(
        None, description="the downstream KPI answered for; needed while the task lists several unanswered ones"
    )


class DecisionOut(Schema):
    id: int
    kind: str = Field(description=" | ".join(Decision.Kind.values))
    kpi: str = Field(description="the KPI's key")
    workstream: int | None
    decided_by: str = Field(description="email")
    reason: str
    decided_at: datetime
    self_approved: bool = Field(
        description="taken by the KPI's owner (or the path's filer, the transfer's requester) because nobody else in "
        "the organization may decide"
    )


class NotificationOut(Schema):
    id: int
    recipient: str
    kind: str
    dedup_key: str
    channel: str
    subject: str
    created_at: datetime
    delivered_at: datetime | None
    read_at: datetime | None
    error: str


def _person(request: HttpRequest) -> Membership:
    return request.auth.membership  # TokenAuth(PERSONAL) let only a personal token in


def _workstream(request: HttpRequest, workstream_id: int) -> Workstream:
    ws = selectors.workstreams(org=request.org).filter(pk=workstream_id).first()
    if ws is None:
        raise ApiError(404, [{"path": "id", "message": f"no workstream {workstream_id}"}])
    return ws


def _out(ws: Workstream, upcoming: selectors.WhatNext | None = None) -> dict:
    path = ws.paths.first()  # newest first (model ordering); prefetched by the list
    upcoming = upcoming or selectors.what_next(ws)
    return {
        "id": ws.pk,
        "kpi": ws.kpi.key,
        "kind": ws.kind,
        "state": "open" if ws.is_open else "resolved",
        "severity": ws.severity,
        "opened_at": ws.opened_at,
        "resolved_at": ws.resolved_at,
        "resolution": ws.resolution,
        "escalation_level": ws.level,
        "escalation_pass": ws.escalation_pass,
        "exhausted": ws.exhausted_at is not None,
        "mitigation": None
        if path is None
        else {
            "state": path.state,
            "root_cause": path.root_cause,
            "expected_recovery": path.expected_recovery,
            "filed_at": path.filed_at,
            "actions": [
                {"description": a.description, "owner": a.owner.user.email, "due": a.due, "done": a.done_at is not None}
                for a in path.actions.all()
            ],
        },
        "next_step": upcoming.step,
        "reminder": upcoming.reminder,
        "next_step_text": upcoming.text,
    }


@router.get(
    "/workstreams",
    auth=TokenAuth(Scope.READ),
    response=list[WorkstreamOut],
    summary="Workstreams, newest first (100 per page)",
)
def workstreams_list(
    request: HttpRequest,
    response: HttpResponse,
    kpi: Text | None = None,
    state: str | None = Query(None, pattern="^(open|resolved)$"),
    page: int = Query(1, ge=1),
):
    qs = selectors.workstreams(org=request.org).prefetch_related("paths__actions__owner__user")
    if kpi:
        qs = qs.filter(kpi__key=kpi)
    if state:
        qs = qs.filter(resolved_at__isnull=state == "open")
    items = list(page_of(response, request, qs, page))
    upcoming = selectors.what_next_of(items)
    return [_out(ws, upcoming[ws.pk]) for ws in items]


@router.post(
    "/workstreams/{workstream_id}/mitigation",
    auth=TokenAuth(PERSONAL),
    response={200: WorkstreamOut, 403: Errors, 404: Errors, 422: Errors},
    summary="File a mitigation path (the KPI owner's personal token)",
)
def workstream_mitigation(request: HttpRequest, workstream_id: int, body: MitigationIn):
    by, ws = _person(request), _workstream(request, workstream_id)
    owners = {
        m.user.email.lower(): m
        for m in Membership.objects.filter(
            organization=request.org, user__email__in=[a.owner.lower() for a in body.actions]
        ).select_related("user")
    }
    unknown = [i for i, a in enumerate(body.actions) if a.owner.lower() not in owners]
    if unknown:
        raise ApiError(422, [{"path": f"actions[{i}].owner", "message": "unknown member"} for i in unknown])
    drafts = [services.ActionDraft(a.description, owners[a.owner.lower()], a.due) for a in body.actions]
    services.mitigation_path_file(
        workstream=ws, by=by, root_cause=body.root_cause, expected_recovery=body.expected_recovery, actions=drafts
    )
    return _out(_workstream(request, workstream_id))


@router.post(
    "/workstreams/{workstream_id}/review",
    auth=TokenAuth(PERSONAL),
    response={200: WorkstreamOut, 403: Errors, 404: Errors, 422: Errors},
    summary="Approve or reject the path awaiting review (an executive's or an escalation target's token)",
)
def workstream_review(request: HttpRequest, workstream_id: int, body: ReviewIn):
    by, ws = _person(request), _workstream(request, workstream_id)
    if body.decision not in ("approve", "reject"):
        raise ApiError(422, [{"path": "decision", "message": "must be approve or reject"}])
    path = ws.paths.filter(state=MitigationPath.State.SUBMITTED).first()
    if path is None:
        raise ApiError(422, [{"path": "id", "message": "no mitigation path awaits review"}])
    services.mitigation_path_review(
        path=path, by=by, approve=body.decision == "approve", comment=body.reason or body.comment
    )
    return _out(_workstream(request, workstream_id))


@router.post(
    "/workstreams/{workstream_id}/close",
    auth=TokenAuth(PERSONAL),
    response={200: WorkstreamOut, 403: Errors, 404: Errors, 422: Errors},
    summary="Close an episode by decision (an executive's token)",
)
def workstream_close(request: HttpRequest, workstream_id: int, body: CloseIn):
    by, ws = _person(request), _workstream(request, workstream_id)
    services.workstream_close(workstream=ws, by=by, resolution=body.resolution, reason=body.reason)
    return _out(_workstream(request, workstream_id))


def _review_out(review: DependencyReview | None) -> dict | None:
    if review is None:
        return None
    return {
        "id": review.pk,
        "kpi": review.kpi.key,
        "state": review.answer or "open",
        "reason": review.answer_reason,
        "answered_at": review.answered_at,
        "workstream": review.workstream_id,
        "due_at": review.due_at,
        "escalation_level": review.level,
        "escalation_pass": review.escalation_pass,
        "exhausted": review.exhausted_at is not None,
        "signals": [
            {
                "upstream": d.upstream.key,
                "kind": d.signal.kind,
                "at": d.at,
                "cause": d.signal.cause,
                "value": d.signal.value,
                "trend": d.signal.trend,
                "throttled": d.throttled,
            }
            for d in review.signals.all()
        ],
    }


def _tasks(request: HttpRequest):
    return (
        Task.objects.for_org(request.org)
        .select_related("assignee__user", "kpi", "review__kpi")
        .prefetch_related(*selectors.REVIEW_PARTS)
    )


def _task(request: HttpRequest, task_id: int) -> Task:
    task = _tasks(request).filter(pk=task_id).first()
    if task is None:
        raise ApiError(404, [{"path": "id", "message": f"no task {task_id}"}])
    return task


def _task_out(task: Task) -> dict:
    parts = task.review_parts
    return {
        "id": task.pk,
        "kind": task.kind,
        "assignee": task.assignee.user.email,
        "kpi": task.kpi.key,
        "workstream": task.workstream_id,
        "level": task.level,
        "pass": task.escalation_pass,
        "state": task.state,
        "due_at": task.due_at,
        "created_at": task.created_at,
        "review": _review_out(parts[0]) if parts else None,
        "reviews": [_review_out(review) for review in parts],
    }


@router.get(
    "/tasks",
    auth=TokenAuth(Scope.READ),
    response=list[TaskOut],
    by_alias=True,
    tags=["tasks"],
    summary="Tasks, soonest due first (100 per page)",
)
def tasks_list(
    request: HttpRequest,
    response: HttpResponse,
    kind: Text | None = None,
    assignee: Text | None = None,
    state: Text | None = None,
    page: int = Query(1, ge=1),
):
    qs = _tasks(request).order_by("due_at", "id")
    if kind:
        qs = qs.filter(kind=kind)
    if assignee:
        qs = qs.filter(assignee__user__email__iexact=assignee)
    if state:
        qs = qs.filter(state=state)
    return [_task_out(t) for t in page_of(response, request, qs, page)]


@router.post(
    "/tasks/{task_id}/acknowledge",
    auth=TokenAuth(PERSONAL),
    response={200: TaskOut, 403: Errors, 404: Errors, 422: Errors},
    by_alias=True,
    tags=["tasks"],
    summary="I am on it: pauses escalation for the policy's ack_timeout (the assignee's token)",
)
def task_acknowledge(request: HttpRequest, task_id: int):
    by = _person(request)
    services.task_acknowledge(task=_task(request, task_id), by=by)
    return _task_out(_task(request, task_id))


@router.post(
    "/tasks/{task_id}/answer",
    auth=TokenAuth(PERSONAL),
    response={200: TaskOut, 403: Errors, 404: Errors, 422: Errors},
    by_alias=True,
    tags=["tasks"],
    summary='Answer a dependency review for one KPI: "impact" opens a preventive workstream, "no impact" needs a '
    "reason (the assignee's token)",
)
def task_answer(request: HttpRequest, task_id: int, body: AnswerIn):
    by, task = _person(request), _task(request, task_id)
    review_id = None
    if body.kpi is not None:
        named = [r for r in task.review_parts if r.kpi.key == body.kpi]
        if not named:
            raise ApiError(422, [{"path": "kpi", "message": f"this task does not review {body.kpi}"}])
        review_id = next((r for r in named if r.is_open), named[0]).pk
    services.dependency_review_answer(task=task, by=by, impact=body.impact, reason=body.reason, review_id=review_id)
    return _task_out(_task(request, task_id))


@router.get(
    "/decisions",
    auth=TokenAuth(Scope.READ),
    response=list[DecisionOut],
    tags=["decisions"],
    summary="The decision log, newest first (100 per page): every decision, wherever it was taken",
)
def decisions_list(
    request: HttpRequest,
    response: HttpResponse,
    kpi: Text | None = None,
    kind: str | None = Query(None, pattern=f"^({'|'.join(Decision.Kind.values)})$"),
    since: Moment | None = None,
    page: int = Query(1, ge=1),
):
    visible = visible_kpis(Kpi.objects.for_org(request.org), request.membership)
    qs = (
        Decision.objects.for_org(request.org)
        .filter(kpi__in=visible)
        .select_related("kpi", "decided_by")
        .order_by("-decided_at", "-id")
    )
    if kpi:
        qs = qs.filter(kpi__key=kpi)
    if kind:
        qs = qs.filter(kind=kind)
    if since:
        qs = qs.filter(decided_at__gte=since)
    return [
        {
            "id": d.pk,
            "kind": d.kind,
            "kpi": d.kpi.key,
            "workstream": d.workstream_id,
            "decided_by": d.decided_by.email,
            "reason": d.reason,
            "decided_at": d.decided_at,
            "self_approved": d.self_approved,
        }
        for d in page_of(response, request, qs, page)
    ]


@router.get(
    "/notifications",
    auth=TokenAuth(Scope.READ),
    response=list[NotificationOut],
    tags=["notifications"],
    summary="Notifications, newest first (100 per page); a personal token sees its own",
)
def notifications_list(
    request: HttpRequest, response: HttpResponse, recipient: Text | None = None, page: int = Query(1, ge=1)
):
    qs = Notification.objects.for_org(request.org).select_related("recipient__user")
    if request.auth.membership is not None and not request.auth.membership.is_admin:
        qs = qs.filter(recipient=request.auth.membership)
    if recipient:
        qs = qs.filter(recipient__user__email__iexact=recipient)
    return [
        {
            "id": n.pk,
            "recipient": n.recipient.user.email,
            "kind": n.kind,
            "dedup_key": n.dedup_key,
            "channel": n.channel,
            "subject": n.subject,
            "created_at": n.created_at,
            "delivered_at": n.delivered_at,
            "read_at": n.read_at,
            "error": n.error,
        }
        for n in page_of(response, request, qs, page)
    ]
