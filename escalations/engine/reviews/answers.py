"""A review's answer: an impact opens a preventive workstream (or joins the open one), and the upstream
episodes and the task hear of it."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import Min, Q

from escalations.engine.blocks import OPEN, SEVERITY, add_task, event, workstream_url
from escalations.engine.episodes import inhibit
from escalations.engine.resolver import policy_for
from escalations.models import (
    DependencyReview,
    Task,
    Workstream,
)
from escalations.notify.fanout import Message, notify
from governance import formats
from governance.models import Membership, User
from scorecards.models import Status


def causes(review: DependencyReview) -> str:
    return "; ".join(
        d.signal.cause for d in review.signals.filter(throttled=False).select_related("signal").order_by("at", "id")
    )


def open_preventive(review: DependencyReview, by: Membership, reason: str, now: datetime) -> Workstream:
    """An "impact" answer: a preventive workstream on the downstream KPI, following that KPI's own policy. When the
    KPI has an open workstream already (one per KPI), that one hears about the expected impact instead."""
    kpi, org = review.kpi, review.kpi.organization
    tz = org.tzinfo
    said = f"{by.user.name} expects an impact from upstream: {causes(review)}{'. ' + reason if reason else ''}"
    current = Workstream.objects.filter(kpi=kpi, resolved_at=None).select_related("organization").first()
    if current is not None:
        event(current, now, "dependency_impact", said, by.user)
        return current
    key, policy = policy_for(kpi)
    due = now + policy.mitigation_due
    ws = Workstream.objects.create(
        organization_id=kpi.organization_id,
        kpi=kpi,
        kind=Workstream.Kind.PREVENTIVE,
        # Nothing is breached yet, unless it is: the expected impact counts as a risk.
        severity=kpi.status if kpi.status in SEVERITY else Status.AT_RISK,
        opened_at=now,
        policy_key=key,
        policy=policy.as_json(),
        next_escalation_at=due if policy.levels else None,
    )
    add_task(ws, Task.Kind.MITIGATION, kpi.owner, due, now, "0:0")
    event(ws, now, "opened", f"Preventive: {said}", by.user)
    inhibit(ws, now)
    if kpi.owner_id != by.pk:  # answered from an escalation task: the owner hears of it
        notify(
            recipients=[kpi.owner],
            message=Message(
                kind=Task.Kind.MITIGATION,
                subject=f"Preventive workstream on {kpi.name}",
                body=f"{said}\n\nFile a mitigation path (actions with owners and dates) by {formats.when(due, tz)}.",
                url=workstream_url(ws),
            ),
            dedup_key=f"{ws.organization_id}:{kpi.pk}:{ws.pk}:opened",
            workstream=ws,
            now=now,
        )
    return ws


def tell_upstream_of_answer(review: DependencyReview, by: User, text: str, now: datetime) -> None:
    """The open workstreams of the review's upstream KPIs record the answer of their participant."""
    upstream = review.signals.filter(throttled=False).values("upstream_id")
    for ws in Workstream.objects.filter(kpi_id__in=upstream, resolved_at=None).select_related("organization"):
        event(ws, now, "review_answered", text, by)


def part_to_answer(task: Task, review_id: int | None) -> DependencyReview:
    """Which of the task's reviews an answer is for: the one named, or else the only one still unanswered."""
    mine = Q(task=task) if task.kind == Task.Kind.DEPENDENCY_REVIEW else Q(pk=task.review_id)
    parts = list(DependencyReview.objects.filter(mine).select_related("kpi").order_by("opened_at", "id"))
    if review_id is not None:
        part = next((r for r in parts if r.pk == review_id), None)
        if part is None:
            raise ValidationError({"kpi": "This task does not review that KPI."})
        return part
    unanswered = [r for r in parts if r.is_open]
    if len(unanswered) > 1:
        keys = ", ".join(sorted(r.kpi.key for r in unanswered))
        raise ValidationError({"kpi": f"This task reviews several KPIs; say which one you answer for ({keys})."})
    if not parts:
        raise ValidationError("This task reviews no KPI.")
    return unanswered[0] if unanswered else parts[0]


def settle_task(task_id: int, now: datetime) -> None:
    """After an answer: an owner's review task is done once every review it lists is answered; until then it is due
    with its earliest unanswered one."""
    due = DependencyReview.objects.filter(task_id=task_id, answered_at=None).aggregate(due=Min("due_at"))["due"]
    still_open = Task.objects.filter(pk=task_id, state__in=OPEN)
    if due is None:
        still_open.update(state=Task.State.DONE, done_at=now)
    else:
        still_open.update(due_at=due)
