"""Open review tasks follow their KPIs' owners: a transfer moves the reviews of the KPIs that changed hands."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.urls import reverse

from escalations.engine.blocks import OPEN
from escalations.engine.reviews.signals import and_list
from escalations.models import (
    DependencyReview,
    Task,
)
from escalations.notify.fanout import Announcement, Message, notify_all
from governance import formats
from scorecards.models import Kpi


def follow_owners(*, now: datetime, org_id: int | None) -> int:
    """Owner changes mid-review (SEMANTICS.md section 3): the new owner of a KPI gets its unanswered reviews at once,
    due when they were. A task whose unanswered reviews all go to one new owner, none answered yet, moves whole;
    otherwise the leaving reviews make a task of their own per new owner. Returns how many reviews moved.

    Afterwards every open review task's `kpi` is owned by its assignee, so sweeps._move_owner_tasks, which moves an
    owner task by its KPI's owner, finds nothing left to move among review tasks."""
    leaving = DependencyReview.objects.filter(answered_at=None, task__state__in=OPEN).exclude(
        task__assignee_id=F("kpi__owner_id")
    )
    if org_id:
        leaving = leaving.filter(organization_id=org_id)
    task_ids = set(leaving.values_list("task_id", flat=True))
    if not task_ids:
        return 0
    with transaction.atomic():
        tasks, parts = _lock_tasks(task_ids)
        moves = _Moves()
        for task in tasks:
            _hand_over(task, parts[task.pk], moves, now)
        moves.save(now)
    return sum(len(reviews) for _, reviews, _ in moves.announcements)


def _lock_tasks(task_ids: set[int]) -> tuple[list[Task], dict[int, list[DependencyReview]]]:
    """The open review tasks, locked, and the reviews each lists, oldest first."""
    # The KPIs' rows first, in id order, as propagation and answers take them; then the tasks, skipping one an
    # answer holds (the next sweep moves it).
    kpi_ids = set(DependencyReview.objects.filter(task_id__in=task_ids).values_list("kpi_id", flat=True))
    list(Kpi.objects.filter(pk__in=kpi_ids).order_by("pk").select_for_update(no_key=True).values_list("pk"))
    tasks = list(
        Task.objects.filter(pk__in=task_ids, state__in=OPEN)
        .select_related("organization")
        .order_by("pk")
        .select_for_update(skip_locked=True, of=("self",))
    )
    parts: dict[int, list[DependencyReview]] = defaultdict(list)
    for review in (
        DependencyReview.objects.filter(task__in=tasks).select_related("kpi__owner__user").order_by("opened_at", "id")
    ):
        parts[review.task_id].append(review)
    return tasks, parts


@dataclass
class _Moves:
    """What the hand-overs write, in bulk at the end: tasks changed and created, reviews moved, who to tell."""

    changed: list[Task] = field(default_factory=list)
    created: list[Task] = field(default_factory=list)
    moved: list[DependencyReview] = field(default_factory=list)
    announcements: list[tuple[Task, list[DependencyReview], int]] = field(default_factory=list)

    def save(self, now: datetime) -> None:
        Task.objects.bulk_create(self.created)
        DependencyReview.objects.bulk_update(self.moved, ["task"])
        Task.objects.bulk_update(self.changed, ["assignee", "kpi", "due_at", "state", "done_at"])
        notify_all([_moved(task, reviews, previous) for task, reviews, previous in self.announcements], now=now)


def _hand_over(task: Task, parts: list[DependencyReview], moves: _Moves, now: datetime) -> None:
    """The task's unanswered reviews of KPIs its assignee no longer owns go to their new owners."""
    unanswered = [r for r in parts if r.is_open]
    going: dict[int, list[DependencyReview]] = defaultdict(list)
    for review in unanswered:
        if review.kpi.owner_id != task.assignee_id:
            going[review.kpi.owner_id].append(review)
    if not going:
        return
    staying = [r for r in unanswered if r.kpi.owner_id == task.assignee_id]
    previous = task.assignee_id
    if not staying and len(going) == 1 and len(unanswered) == len(parts):
        [reviews] = going.values()
        task.assignee, task.kpi = reviews[0].kpi.owner, reviews[0].kpi
        moves.changed.append(task)
        moves.announcements.append((task, reviews, previous))
        return
    for reviews in going.values():
        _split_off(task, reviews, moves, now)
    if staying:
        task.kpi, task.due_at = staying[0].kpi, min(r.due_at for r in staying)
    else:  # what it still lists was answered
        task.state, task.done_at = Task.State.DONE, now
    moves.changed.append(task)


def _split_off(task: Task, reviews: list[DependencyReview], moves: _Moves, now: datetime) -> None:
    """Reviews of one new owner leave `task` for a task of their own, due with the earliest of them."""
    kpi = reviews[0].kpi
    new = Task(
        organization_id=task.organization_id,
        kind=Task.Kind.DEPENDENCY_REVIEW,
        assignee=kpi.owner,
        kpi=kpi,
        due_at=min(r.due_at for r in reviews),
        created_at=now,
        dedup_key=f"{task.organization_id}:{kpi.pk}:review{reviews[0].pk}:moved:{task.pk}:{kpi.owner_id}",
    )
    new.organization = task.organization
    moves.created.append(new)
    for review in reviews:
        review.task = new
        moves.moved.append(review)
    moves.announcements.append((new, reviews, task.assignee_id))  # the task keeps its assignee


def _moved(task: Task, reviews: list[DependencyReview], previous: int) -> Announcement:
    org = task.organization
    return Announcement(
        recipients=[task.assignee],
        message=Message(
            kind=task.kind,
            subject=f"You now own {and_list([r.kpi.name for r in reviews])}: {task.get_kind_display().lower()}",
            body=f"Due {formats.when(task.due_at, org.tzinfo)}.",
            url=f"{reverse('escalations:task_inbox', args=[org.slug])}#task-{task.pk}",
        ),
        dedup_key=f"{task.organization_id}:{task.kpi_id}:review{reviews[0].pk}:moved:{task.pk}:{previous}",
    )
