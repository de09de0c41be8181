"""The reminders of attested manual values (scorecards.manual): once a manual KPI's period has ended, each of its
updaters gets an "Enter the period's value" task until a value for it is entered; while a value waits for
confirmation, each of its approvers (but the person who entered it) gets a "Confirm a value" task.

Periods are the organization's calendar: a monthly KPI's November is due from 1 December, local time. Tasks and
notifications carry dedup keys (org:kpi:manual:<period>:entry|approve<value>:<member>), so two beats, or a beat and
a redelivered one, write each task once; a period or value dealt with closes its tasks, at once when it happens in
this app's pages and at the next beat otherwise."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from escalations.engine.authority import decision_record
from escalations.engine.blocks import OPEN
from escalations.models import Decision, Task
from escalations.notify.fanout import Announcement, Message, notify_all
from governance.models import Membership, User
from governance.services.audit import audit_log
from scorecards import manual as calendar
from scorecards.models import Kpi, ManualKpi, ManualValue

ENTRY = Task.Kind.MANUAL_ENTRY
APPROVAL = Task.Kind.MANUAL_APPROVAL
# How long after its period ends a value is due, and how long a confirmation may take.
ENTRY_DUE = timedelta(days=5)
APPROVAL_DUE = timedelta(days=2)
# An entered or confirmed value ends the period's data entry.
FILLED = [ManualValue.State.PENDING, ManualValue.State.CONFIRMED]


@transaction.atomic
def manual_value_decide(
    *, value: ManualValue, by: Membership, confirm: bool, reason: str = "", now: datetime | None = None
) -> ManualValue:
    """Confirms or rejects a value (scorecards.manual checks four eyes and makes the change) and records the decision
    in the same transaction: a value that counts, or is sent back, is on the decision log like any other decision.
    A confirmation needs no reason of its own; the log says what was confirmed."""
    if confirm:
        value = calendar.manual_value_confirm(value=value, by=by, now=now)
    else:
        value = calendar.manual_value_reject(value=value, by=by, reason=reason, now=now)
    period = calendar.period_label(value.kpi.manual.period, value.period_start)
    decision_record(
        kind=Decision.Kind.VALUE_CONFIRMED if confirm else Decision.Kind.VALUE_REJECTED,
        kpi=value.kpi,
        by=by,
        authority=calendar.confirm_authority(value, by),
        reason=reason.strip() or f"Confirmed {value.value:g} for {period}, entered by {value.entered_by.name}.",
        payload={"period": period, "value": value.value, "entered_by": value.entered_by.email},
        now=value.decided_at,
    )
    return value


def manual_key(manual: ManualKpi, period: str) -> str:
    return f"{manual.organization_id}:{manual.kpi_id}:manual:{period}:"


def remind_manual_values(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Closes the tasks of periods and values dealt with, then writes the entry and approval tasks now due; returns
    how many tasks it wrote."""
    now = now or timezone.now()
    _cancel_unmanaged(now, org_id)
    manuals = ManualKpi.objects.filter(kpi__archived_at=None).select_related(
        "organization", "kpi__owner__user", "approver__user"
    )
    if org_id:
        manuals = manuals.filter(organization_id=org_id)
    return sum(remind_kpi(manual=manual, now=now) for manual in manuals.prefetch_related("updaters__user"))


def _cancel_unmanaged(now: datetime, org_id: int | None) -> None:
    """The open tasks of KPIs no longer kept by hand (the manifest dropped `manual:`) or archived are cancelled: nobody
    can enter or confirm their values any more (scorecards.manual refuses), so nobody should be chased for them."""
    gone = Task.objects.filter(kind__in=[ENTRY, APPROVAL], state__in=OPEN).filter(
        Q(kpi__manual=None) | ~Q(kpi__archived_at=None)
    )
    if org_id:
        gone = gone.filter(organization_id=org_id)
    by_kpi: dict[Kpi, list[int]] = {}
    for task in gone.select_related("kpi__organization"):
        by_kpi.setdefault(task.kpi, []).append(task.pk)
    for kpi, ids in by_kpi.items():
        with transaction.atomic():
            _end_tasks(kpi, ids, Task.State.CANCELLED, "manual_value.tasks_cancelled", None, now)


@transaction.atomic
def remind_kpi(*, manual: ManualKpi, actor: User | None = None, now: datetime | None = None) -> int:
    """One manual KPI's tasks brought up to date: the beat's step, and the pages' right after an entry or a
    decision (so the approver sees a new value at once)."""
    now = now or timezone.now()
    # Two beats at once (or a beat and a page): one brings this KPI's tasks up to date, the other skips it.
    if not ManualKpi.objects.filter(pk=manual.pk).select_for_update(skip_locked=True).values_list("pk"):
        return 0
    close_manual_tasks(kpi=manual.kpi, actor=actor, now=now)
    return _entry_tasks(manual, now) + _approval_tasks(manual, now)


def _entry_tasks(manual: ManualKpi, now: datetime) -> int:
    org = manual.organization
    period = calendar.due_period(manual.period, timezone.localdate(now, org.tzinfo))
    if ManualValue.objects.filter(kpi_id=manual.kpi_id, period_start=period, state__in=FILLED).exists():
        return 0
    ended = datetime.combine(calendar.period_after(manual.period, period), time(0), tzinfo=org.tzinfo)
    # A KPI declared manual after the period ended asks for nothing older than its declaration's first period.
    if ended <= manual.kpi.created_at:
        return 0
    label = calendar.period_label(manual.period, period)
    key = manual_key(manual, period.isoformat())
    people = calendar.updaters(manual)
    message = Message(
        kind=ENTRY,
        subject=f"Enter {label} for {manual.kpi.name}",
        body=f"{label} has ended: enter its value on the KPI's page, with a note and a link to the evidence. "
        f"{calendar.approver_words(manual).capitalize()} confirms it before it counts.",
        url=reverse("scorecards:kpi_detail", args=[org.slug, manual.kpi_id]),
    )
    return _write(manual, people, ENTRY, key + "entry:", ended + ENTRY_DUE, now, message, label)


def _approval_tasks(manual: ManualKpi, now: datetime) -> int:
    org, written = manual.organization, 0
    pending = ManualValue.objects.filter(kpi_id=manual.kpi_id, state=ManualValue.State.PENDING).select_related(
        "entered_by"
    )
    for value in pending:
        label = calendar.period_label(manual.period, value.period_start)
        people = [m for m in calendar.approvers(manual) if m.user_id != value.entered_by_id]
        message = Message(
            kind=APPROVAL,
            subject=f"Confirm {label} of {manual.kpi.name}",
            body=f"{value.entered_by.name} entered {value.value:g} for {label}. Confirm it, or reject it with a "
            "reason, from your inbox: only a confirmed value counts.",
            url=reverse("escalations:task_inbox", args=[org.slug]),
        )
        key = manual_key(manual, value.period_start.isoformat()) + f"approve{value.pk}:"
        written += _write(manual, people, APPROVAL, key, value.entered_at + APPROVAL_DUE, now, message, label)
    return written


def _write(
    manual: ManualKpi,
    people: list[Membership],
    kind: str,
    key: str,
    due: datetime,
    now: datetime,
    message: Message,
    label: str,
) -> int:
    wanted = {f"{key}{person.pk}": person for person in people}
    # Two beats write each task once: the second finds the first's keys (and a racing one loses on the unique key).
    written = set(Task.objects.filter(dedup_key__in=list(wanted)).values_list("dedup_key", flat=True))
    fresh = [person for dedup, person in wanted.items() if dedup not in written]
    if not fresh:
        return 0
    Task.objects.bulk_create(
        [
            Task(
                organization_id=manual.organization_id,
                kind=kind,
                assignee=person,
                kpi_id=manual.kpi_id,
                due_at=due,
                created_at=now,
                dedup_key=f"{key}{person.pk}",
            )
            for person in fresh
        ],
        ignore_conflicts=True,
    )
    notify_all([Announcement(recipients=fresh, message=message, dedup_key=key.rstrip(":"))], now=now)
    audit_log(
        org=manual.organization,
        actor=None,
        verb=f"manual_value.{'entry' if kind == ENTRY else 'approval'}_tasked",
        obj=manual.kpi,
        after={"period": label, "to": [p.user.email for p in fresh]},
    )
    return len(fresh)


def close_manual_tasks(*, kpi: Kpi, actor: User | None, now: datetime | None = None) -> int:
    """The open tasks of this KPI's periods that have a value now, and of its values no longer pending: done."""
    now = now or timezone.now()
    open_tasks = Task.objects.filter(kpi_id=kpi.pk, kind__in=[ENTRY, APPROVAL], state__in=OPEN)
    keys = list(open_tasks.values_list("pk", "kind", "dedup_key"))
    if not keys:
        return 0
    filled = {
        day.isoformat()
        for day in ManualValue.objects.filter(kpi_id=kpi.pk, state__in=FILLED).values_list("period_start", flat=True)
    }
    pending = {
        f"approve{pk}"
        for pk in ManualValue.objects.filter(kpi_id=kpi.pk, state=ManualValue.State.PENDING).values_list(
            "pk", flat=True
        )
    }
    done = []
    for pk, kind, key in keys:
        _, _, _, period, what, _ = key.split(":")
        if (kind == ENTRY and period in filled) or (kind == APPROVAL and what not in pending):
            done.append(pk)
    return _end_tasks(kpi, done, Task.State.DONE, "manual_value.tasks_closed", actor, now)


def _end_tasks(kpi: Kpi, ids: list[int], state: str, verb: str, actor: User | None, now: datetime) -> int:
    """Ends the still-open tasks among `ids` in `state`, audited once for the KPI; returns how many it ended."""
    ended = Task.objects.filter(pk__in=ids, state__in=OPEN).update(state=state, done_at=now)
    if ended:
        audit_log(org=kpi.organization, actor=actor, verb=verb, obj=kpi, after={"tasks": ended})
    return ended


def with_manual_values(tasks: list[Task]) -> list[Task]:
    """Each approval task's value (`.manual_value`) and whether its assignee may decide it (`.authority`), and
    its period in words (`.manual_value.label`), as the inbox shows them; other tasks cost no query."""
    mine = [t for t in tasks if t.kind == APPROVAL]
    if mine:
        ids = {int(t.dedup_key.split(":")[4].removeprefix("approve")) for t in mine}
        values = ManualValue.objects.filter(organization_id=mine[0].organization_id, pk__in=ids).select_related(
            "entered_by", "kpi__manual__approver", "kpi__organization"
        )
        by_id = {v.pk: v for v in values}
        for task in mine:
            task.manual_value = value = by_id.get(int(task.dedup_key.split(":")[4].removeprefix("approve")))
            if value is not None:
                value.label = calendar.period_label(value.kpi.manual.period, value.period_start)
            task.authority = task.manual_value and calendar.confirm_authority(task.manual_value, task.assignee)
    return tasks
