"""The escalation engine's sweeps (SEMANTICS.md sections 2 and 3): status changes open and resolve episodes,
due escalations advance level by level. Celery beat runs them every minute; `tick` runs them in order.

Both are safe under two beats, two workers and redelivery: rows are claimed with SELECT ... FOR UPDATE SKIP
LOCKED in the transaction that writes the outcome, an open workstream is unique per KPI in the database, and
tasks and notifications carry dedup keys. Every step is computed from the time it was due, not from when the
sweep happened to run, so a late sweep catches up with exactly the steps (and times) it missed.

Both work a batch at a time in a constant number of queries, whatever the batch's size: what a batch needs is
read up front, its steps run in memory in the order the rules give (Episodes, the escalation loop), and what they
write is gathered in a Journal and stored in bulk at the end of the batch, in the same transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from escalations.engine.admins import advance_missing_admins
from escalations.engine.blocks import OPEN, OWNER_TASKS, Counts, Journal, save_fields, workstream_url
from escalations.engine.episodes import Episodes
from escalations.engine.escalation import Escalation
from escalations.engine.reviews import propagation
from escalations.engine.reviews.escalation import advance_reviews
from escalations.engine.reviews.signals import signals_from_changes, signals_from_surges
from escalations.engine.source_tasks import advance_source_tasks
from escalations.engine.transfers import advance_transfers
from escalations.models import (
    MitigationAction,
    MitigationPath,
    Task,
    Workstream,
)
from escalations.notify.fanout import Announcement, Message
from governance import formats
from scorecards.models import Kpi, StatusChange

BATCH_SIZE = 200


def process_status_changes(*, now: datetime | None = None, org_id: int | None = None) -> Counts:
    """Claims unprocessed StatusChange rows (the evaluator's outbox), oldest first per KPI, and acts on them; then
    the surges; then carries both to the downstream owners as dependency reviews (escalations.engine.reviews)."""
    now = now or timezone.now()
    counts = Counts()
    while True:
        with transaction.atomic():
            # Only a KPI's oldest unprocessed change is eligible, so two sweeps never apply one KPI's changes out
            # of order: while one sweep holds it, the next change of that KPI waits for the next round.
            older = StatusChange.objects.filter(
                kpi=OuterRef("kpi"), processed_at=None, changed_at__lt=OuterRef("changed_at")
            )
            pending = StatusChange.objects.filter(processed_at=None).exclude(Exists(older))
            if org_id:
                pending = pending.filter(organization_id=org_id)
            batch = list(
                pending.order_by("changed_at", "id").select_for_update(skip_locked=True, of=("self",))[:BATCH_SIZE]
            )
            if not batch:
                break
            # The batch's KPI rows, locked in id order as ingestion locks them (so the two never deadlock),
            # serialise everything that opens or resolves these KPIs' episodes. NO KEY UPDATE still lets an
            # escalation sweep insert rows naming these KPIs (its tasks): it may hold a workstream this batch
            # waits for, and must not wait for this batch in turn.
            kpis = {
                kpi.pk: kpi
                for kpi in Kpi.objects.filter(pk__in={c.kpi_id for c in batch})
                .select_related("organization", "team", "owner__user")
                .order_by("pk")
                .select_for_update(of=("self",), no_key=True)
            }
            # A KPI has one change per evaluation time (a unique constraint) and only its oldest is claimed, so the
            # batch holds one change per KPI: they apply in (changed_at, id) order, each seeing the ones before it.
            episodes = Episodes(now, kpis)
            episodes.load(batch)
            for change in batch:
                episodes.apply(change, counts)
            episodes.flush()
            for change in batch:
                change.processed_at = now
            StatusChange.objects.filter(pk__in=[c.pk for c in batch]).update(processed_at=now)
            counts.processed += len(batch)
            counts.signals += signals_from_changes(batch, kpis)
    counts.signals += signals_from_surges(now=now, org_id=org_id)
    counts.reviews, counts.throttled = propagation.propagate(now=now, org_id=org_id)
    _move_owner_tasks(now, org_id)
    return counts


def _move_owner_tasks(now: datetime, org_id: int | None) -> None:
    """After an ownership transfer the new owner gets the open owner tasks at once; the clock does not restart."""
    stale = Task.objects.filter(kind__in=OWNER_TASKS, state__in=OPEN).exclude(assignee_id=F("kpi__owner_id"))
    if org_id:
        stale = stale.filter(organization_id=org_id)
    with transaction.atomic():
        tasks = list(
            stale.select_related("kpi__owner__user", "workstream__organization").select_for_update(
                skip_locked=True, of=("self",)
            )
        )
        if not tasks:
            return
        journal = Journal(now)
        for task in tasks:
            previous = task.assignee_id
            task.assignee = task.kpi.owner
            subject = f"You now own {task.kpi.name}: {task.get_kind_display().lower()}"
            ws = task.workstream
            journal.event(ws, now, "owner_changed", f"Open task moved to the new owner, {task.kpi.owner.user.name}")
            journal.announce(
                Announcement(
                    recipients=[task.kpi.owner],
                    message=Message(
                        kind=task.kind,
                        subject=subject,
                        body=f"Due {formats.when(task.due_at, ws.organization.tzinfo)}.",
                        url=workstream_url(ws),
                    ),
                    dedup_key=f"{task.organization_id}:{task.kpi_id}:{task.workstream_id}:moved:{task.pk}:{previous}",
                    workstream=ws,
                )
            )
        save_fields(tasks, ["assignee"])
        journal.flush()


def advance_escalations(*, now: datetime | None = None, org_id: int | None = None) -> Counts:
    """Flags overdue actions, then advances every workstream whose next escalation step is due, a batch at a time:
    what a batch needs is read in a few queries, and its events, tasks and notifications are written in bulk; then
    the dependency reviews, the leavers' ownership transfers and the organizations left without an admin."""
    now = now or timezone.now()
    counts = Counts()
    _flag_overdue_actions(now, org_id)
    while True:
        with transaction.atomic():
            # A workstream waiting on an upstream episode is left alone until that one resolves (release_downstream).
            due = Workstream.objects.filter(resolved_at=None, next_escalation_at__lte=now, waiting_on=None)
            if org_id:
                due = due.filter(organization_id=org_id)
            batch = list(
                due.select_related("organization", "kpi__team__lead__user", "kpi__owner__user").select_for_update(
                    skip_locked=True, of=("self",)
                )[:BATCH_SIZE]
            )
            if not batch:
                counts.escalated += advance_reviews(now=now, org_id=org_id) + advance_transfers(now=now, org_id=org_id)
                counts.escalated += advance_source_tasks(now=now, org_id=org_id)
                advance_missing_admins(now=now, org_id=org_id)
                return counts
            escalation = Escalation(batch, now)
            held = _held_by_upstream(batch, now, escalation.journal)
            for ws in batch:
                if ws.pk not in held:
                    counts.escalated += escalation.advance(ws, ws.pk in escalation.mitigated)
            escalation.flush()
            save_fields(
                batch, ["level", "escalation_pass", "renotify", "next_escalation_at", "exhausted_at", "waiting_on"]
            )


def _held_by_upstream(batch: list[Workstream], now: datetime, journal: Journal) -> set[int]:
    """The batch's workstreams that opened within a direct upstream KPI's open episode (one query): inhibit() marks
    them when they open, but an upstream that opened in the same sweep after them, or an edge drawn since, is
    caught here, before they escalate."""
    episodes: dict[int, list[tuple[datetime, int, str]]] = {}
    for pk, opened, name, down in (
        Workstream.objects.filter(resolved_at=None, kpi__downstream_edges__downstream_id__in={w.kpi_id for w in batch})
        .order_by("opened_at", "id")
        .values_list("pk", "opened_at", "kpi__name", "kpi__downstream_edges__downstream_id")
    ):
        episodes.setdefault(down, []).append((opened, pk, name))
    held = set()
    for ws in batch:
        within = [(pk, name) for opened, pk, name in episodes.get(ws.kpi_id, []) if opened <= ws.opened_at]
        if within:
            ws.waiting_on_id = within[0][0]
            held.add(ws.pk)
            journal.event(
                ws, now, "waiting_on_upstream", f"Escalation waits on upstream: {within[0][1]} has an open episode"
            )
    return held


def _flag_overdue_actions(now: datetime, org_id: int | None) -> None:
    """An approved path's action past its due date (in the organization's calendar) gets a task for its owner
    and restarts the episode's escalation from level 1."""
    candidates = MitigationAction.objects.filter(
        done_at=None,
        overdue_at=None,
        due__lt=now.date() + timedelta(days=1),  # every zone's "today" is at most a day past UTC's
        path__state=MitigationPath.State.APPROVED,
        path__workstream__resolved_at=None,
    )
    if org_id:
        candidates = candidates.filter(organization_id=org_id)
    with transaction.atomic():
        overdue = [
            action
            for action in candidates.select_related(
                "path__workstream__organization", "path__workstream__kpi", "owner__user"
            ).select_for_update(skip_locked=True, of=("self",))
            if action.due < timezone.localtime(now, action.path.workstream.organization.tzinfo).date()
        ]
        if not overdue:
            return
        journal = Journal(now)
        for action in overdue:
            ws = action.path.workstream
            action.overdue_at, due = now, formats.day(action.due, year=False, weekday=True)
            journal.task(ws, Task.Kind.ACTION, action.owner, now, f"action{action.pk}", action=action)
            journal.event(
                ws,
                now,
                "action_overdue",
                f"Action overdue ({action.owner.user.name}, due {due}): {action.description}",
            )
            journal.notify(
                ws,
                [action.owner],
                Task.Kind.ACTION,
                f"Overdue action for {ws.kpi.name}",
                f"{action.description}\n\nDue {due}. Mark it done or record its progress.",
                f"action{action.pk}",
            )
        MitigationAction.objects.filter(pk__in=[a.pk for a in overdue]).update(overdue_at=now)
        journal.flush()
        Workstream.objects.filter(pk__in={a.path.workstream_id for a in overdue}).update(
            level=0, escalation_pass=0, renotify=False, exhausted_at=None, next_escalation_at=now
        )
