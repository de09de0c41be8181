"""A leaver's KPIs wait for someone to accept ownership (scorecards.leavers writes one pending transfer per KPI):
the person a transfer is addressed to gets an "Accept ownership" task at once; while it is still pending after
LEAVER_TRANSFER_WAIT_BUSINESS_DAYS of the organization's business hours, the other admins (the executives when
there is no other admin) get one too, and after a second wait the executives. Deciding the transfer, from the
inbox or anywhere else, closes its tasks.

The sweep reads the pending transfers as it reads the StatusChange outbox: scorecards writes rows and never calls
up. A transfer row is locked while its steps are written (SKIP LOCKED), and tasks and notifications carry dedup keys,
so two beats write each step once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from escalations.engine.blocks import OPEN
from escalations.models import Task
from escalations.notify.fanout import Announcement, Message, notify_all
from governance import formats
from governance.hours import business_hours
from governance.models import Membership, Organization, Role, User
from governance.services.audit import audit_log
from scorecards.models import OwnershipTransfer
from scorecards.services import transfer_authority

KIND = Task.Kind.OWNERSHIP_TRANSFER
DONE_WHEN = {OwnershipTransfer.State.APPROVED: Task.State.DONE, OwnershipTransfer.State.REJECTED: Task.State.DONE}


@dataclass(frozen=True)
class Step:
    """Level 0 is the addressee's own task; 1 the admins, 2 the executives. `due` is when the next one comes."""

    level: int
    at: datetime
    due: datetime
    people: list[Membership]


def transfer_key(transfer: OwnershipTransfer) -> str:
    """What the dedup keys of every task and notification about this transfer start with."""
    return f"{transfer.organization_id}:{transfer.kpi_id}:transfer{transfer.pk}:"


def key_of(task_key: str) -> str:
    """The transfer key a task's dedup key starts with."""
    return ":".join(task_key.split(":")[:3]) + ":"


def advance_transfers(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Closes the tasks of transfers decided elsewhere, then writes every step due of the pending ones; returns how
    many levels were notified."""
    now = now or timezone.now()
    # The escalation sweep runs this in its last transaction: no savepoint of its own (its constant query budget).
    with transaction.atomic(savepoint=False):
        _close_decided(now, org_id)
        pending = OwnershipTransfer.objects.filter(state=OwnershipTransfer.State.PENDING, from_owner__is_active=False)
        if org_id:
            pending = pending.filter(organization_id=org_id)
        batch = list(
            pending.select_related("organization", "kpi", "from_owner__user", "to_owner__user")
            .order_by("requested_at", "id")
            .select_for_update(skip_locked=True, of=("self",), no_key=True)
        )
        if not batch:
            return 0
        reached = _reached(batch)
        tasks: list[Task] = []
        announcements: list[Announcement] = []
        escalated = 0
        for transfer in batch:
            for step in _due_steps(transfer, now, reached.get(transfer_key(transfer), {})):
                tasks += [_task(transfer, step, person, now) for person in step.people]
                announcements.append(_announcement(transfer, step))
                _audit(transfer, step)
                escalated += step.level > 0
        Task.objects.bulk_create(tasks, ignore_conflicts=True)
        notify_all(announcements, now=now)
        return escalated


def _reached(batch: list[OwnershipTransfer]) -> dict[str, dict[int, set[int]]]:
    """Per transfer (its key), the levels already written and who got a task at each."""
    reached: dict[str, dict[int, set[int]]] = {}
    written = Task.objects.filter(kind=KIND, kpi_id__in={t.kpi_id for t in batch}).values_list(
        "dedup_key", "level", "assignee_id"
    )
    for key, level, assignee in written:
        reached.setdefault(key_of(key), {}).setdefault(level, set()).add(assignee)
    return reached


def _due_steps(transfer: OwnershipTransfer, now: datetime, reached: dict[int, set[int]]) -> list[Step]:
    """The steps due by `now` and not written yet, each at its own time; a level that names nobody is left out
    (and looked at again by the next sweep: an admin may have joined)."""
    hours, wait = business_hours(transfer.organization), _wait(transfer.organization)
    first = hours.add(transfer.requested_at, wait)
    second = hours.add(first, wait)
    told = {person for people in reached.values() for person in people}
    plan = [
        (0, transfer.requested_at, first, lambda: [transfer.to_owner]),
        (1, first, second, lambda: _others(transfer, [Role.ADMIN]) or _others(transfer, [Role.EXECUTIVE])),
        (2, second, hours.add(second, wait), lambda: _others(transfer, [Role.EXECUTIVE])),
    ]
    steps = []
    for level, at, due, people in plan:
        if at > now or level in reached:
            continue
        found = [p for p in people() if p.pk not in told]
        if found:
            steps.append(Step(level, at, due, found))
            told |= {p.pk for p in found}
    return steps


def _wait(org: Organization) -> timedelta:
    """LEAVER_TRANSFER_WAIT_BUSINESS_DAYS as open time: so many of the organization's business days."""
    day = datetime.combine(date.min, org.business_end) - datetime.combine(date.min, org.business_start)
    return day * settings.LEAVER_TRANSFER_WAIT_BUSINESS_DAYS


def _others(transfer: OwnershipTransfer, roles: list[str]) -> list[Membership]:
    """The organization's active members of these roles, but the addressee and the leaver."""
    return list(
        Membership.objects.for_org(transfer.organization)
        .filter(role__in=roles, is_active=True)
        .exclude(pk__in=[transfer.to_owner_id, transfer.from_owner_id])
        .select_related("user")
        .order_by("created_at", "pk")
    )


def _task(transfer: OwnershipTransfer, step: Step, person: Membership, now: datetime) -> Task:
    return Task(
        organization_id=transfer.organization_id,
        kind=KIND,
        assignee=person,
        kpi_id=transfer.kpi_id,
        level=step.level,
        due_at=step.due,
        created_at=now,
        dedup_key=f"{transfer_key(transfer)}{KIND}:{step.level}:{person.pk}",
    )


def _announcement(transfer: OwnershipTransfer, step: Step) -> Announcement:
    kpi, org = transfer.kpi, transfer.organization
    leaver, addressee = transfer.from_owner.user.name, transfer.to_owner.user.name
    if step.level == 0:
        subject = f"Accept ownership of {kpi.name}"
        body = f"{transfer.reason}\n\nAccept or decline it from your inbox by {formats.when(step.due, org.tzinfo)}."
    else:
        subject = f"Escalation: nobody has accepted ownership of {kpi.name}"
        body = (
            f"{leaver} left on {formats.when(transfer.requested_at, org.tzinfo)}; {addressee} was asked to accept "
            f"ownership of {kpi.name} and has not answered. Accept it yourself from your inbox, or get it accepted."
        )
    return Announcement(
        recipients=step.people,
        message=Message(kind=KIND, subject=subject, body=body, url=reverse("escalations:task_inbox", args=[org.slug])),
        dedup_key=f"{transfer_key(transfer)}{step.level}",
    )


def _audit(transfer: OwnershipTransfer, step: Step) -> None:
    audit_log(
        org=transfer.organization,
        actor=None,
        verb="kpi.transfer_escalated" if step.level else "kpi.transfer_tasked",
        obj=transfer.kpi,
        after={"transfer": transfer.pk, "level": step.level, "to": [p.user.email for p in step.people]},
    )


def close_tasks(
    *, transfer: OwnershipTransfer, actor: User | None, now: datetime | None = None, state: str = ""
) -> int:
    """The open tasks of a transfer no longer pending: done when it was decided (or taken over: `state`),
    cancelled when withdrawn."""
    now = now or timezone.now()
    open_tasks = Task.objects.filter(kind=KIND, dedup_key__startswith=transfer_key(transfer), state__in=OPEN)
    state = state or DONE_WHEN.get(transfer.state, Task.State.CANCELLED)
    closed = open_tasks.update(state=state, done_at=transfer.decided_at or now)
    if closed:
        audit_log(
            org=transfer.organization,
            actor=actor,
            verb="kpi.transfer_tasks_closed",
            obj=transfer.kpi,
            after={"transfer": transfer.pk, "transfer_state": transfer.state, "tasks": closed, "state": state},
        )
    return closed


def _close_decided(now: datetime, org_id: int | None) -> None:
    """The safety net for a transfer decided or withdrawn without the escalations app (the scorecards API)."""
    stale = Task.objects.filter(kind=KIND, state__in=OPEN)
    if org_id:
        stale = stale.filter(organization_id=org_id)
    keys = {key_of(key) for key in stale.select_for_update(skip_locked=True).values_list("dedup_key", flat=True)}
    if not keys:
        return
    ids = [int(key.split(":")[2].removeprefix("transfer")) for key in keys]
    decided = OwnershipTransfer.objects.filter(pk__in=ids).exclude(state=OwnershipTransfer.State.PENDING)
    for transfer in decided.select_related("organization", "kpi", "decided_by"):
        close_tasks(transfer=transfer, actor=transfer.decided_by, now=now)


def with_transfers(tasks: list[Task]) -> list[Task]:
    """Each ownership transfer task's transfer (`.transfer`, with the leaver and the addressee) and whether its
    assignee may decide it (`.authority`), as the inbox shows them; other tasks cost no query."""
    mine = [t for t in tasks if t.kind == KIND]
    if not mine:
        return tasks
    asked = OwnershipTransfer.objects.filter(
        organization_id=mine[0].organization_id, kpi_id__in={t.kpi_id for t in mine}
    ).select_related("from_owner__user", "to_owner__user")
    by_key = {transfer_key(transfer): transfer for transfer in asked}
    for task in mine:
        task.transfer = by_key.get(key_of(task.dedup_key))
        task.authority = task.transfer and transfer_authority(task.transfer, task.assignee)
    return tasks
