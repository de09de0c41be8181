"""The engine's building blocks, shared by the sweeps, the dependency reviews and the features above: the
timeline event, the task, the Journal that writes a batch's outcome in bulk, and the mitigation facts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.db.models import Case, Model, Value, When
from django.urls import reverse

from escalations.models import (
    MitigationAction,
    MitigationPath,
    Task,
    Workstream,
    WorkstreamEvent,
)
from escalations.notify import webhooks
from escalations.notify.fanout import Announcement, Message, notify_all
from governance.models import Membership, User
from scorecards.models import Status

BREACH = {Status.AT_RISK, Status.OFF_TRACK}


SEVERITY = {Status.STALE: 0, Status.AT_RISK: 1, Status.OFF_TRACK: 2}


# Dependency review tasks follow their KPIs' owners in escalations.engine.reviews.owners.follow_owners: one task may
# list the reviews of several KPIs, and only some of them may change hands.
OWNER_TASKS = {Task.Kind.MITIGATION, Task.Kind.DATA_FRESHNESS}


OPEN = [Task.State.OPEN, Task.State.ACKNOWLEDGED]


def workstream_url(ws: Workstream) -> str:
    return reverse("escalations:workstream_detail", args=[ws.organization.slug, ws.pk])


def event(ws: Workstream, at: datetime, verb: str, text: str, actor: User | None = None) -> None:
    """One event now (a person's action); a sweep's batch gathers its events in a Journal instead."""
    WorkstreamEvent.objects.create(
        organization_id=ws.organization_id, workstream=ws, at=at, verb=verb, text=text, actor=actor
    )
    # The organization's webhooks hear about it in this same transaction (webhooks.VERBS says which verbs).
    webhooks.announce(ws, at, verb, text)


def new_task(ws: Workstream, kind: str, assignee: Membership, due: datetime, now: datetime, key: str, **extra) -> Task:
    return Task(
        organization_id=ws.organization_id,
        kind=kind,
        assignee=assignee,
        kpi_id=ws.kpi_id,
        workstream=ws,
        due_at=due,
        created_at=now,
        dedup_key=f"{ws.organization_id}:{ws.kpi_id}:{ws.pk}:{kind}:{key}:{assignee.pk}",
        **extra,
    )


def add_task(ws: Workstream, kind: str, assignee: Membership, due: datetime, now: datetime, key: str, **extra) -> None:
    # A dedup key seen before (a redelivered sweep) creates nothing.
    Task.objects.bulk_create([new_task(ws, kind, assignee, due, now, key, **extra)], ignore_conflicts=True)


class Journal:
    """What a sweep's batch writes besides its workstreams: timeline events (and the webhook deliveries they
    announce), tasks and notifications, gathered in the order the steps happen and stored by flush() in a few
    statements. A workstream the batch opens gets its id only when it is inserted, so what names it (dedup keys,
    links) is built in flush(); what an event tells webhooks is taken when it happens (webhooks.heard)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.events: list[tuple[Workstream, datetime, str, str, User | None]] = []
        self.occurrences: list[webhooks.Occurrence] = []
        self.tasks: list[Callable[[], Task]] = []
        self.notices: list[Callable[[], Announcement]] = []

    def event(self, ws: Workstream, at: datetime, verb: str, text: str, actor: User | None = None) -> None:
        self.events.append((ws, at, verb, text, actor))
        if occurrence := webhooks.heard(ws, at, verb, text):
            self.occurrences.append(occurrence)

    def task(self, ws: Workstream, kind: str, assignee: Membership, due: datetime, key: str, **extra) -> None:
        self.tasks.append(partial(new_task, ws, kind, assignee, due, self.now, key, **extra))

    def notify(
        self, ws: Workstream, recipients: list[Membership], kind: str, subject: str, body: str, key: str
    ) -> None:
        """A notification about `ws`, deduplicated by `org:kpi:episode:<key>:<recipient>`."""
        self.notices.append(partial(_about, ws, recipients, kind, subject, body, key))

    def announce(self, announcement: Announcement) -> None:
        self.notices.append(lambda: announcement)

    def flush(self) -> None:
        # A dedup key seen before (a redelivered sweep) creates nothing.
        Task.objects.bulk_create([make() for make in self.tasks], ignore_conflicts=True)
        WorkstreamEvent.objects.bulk_create(
            WorkstreamEvent(
                organization_id=ws.organization_id, workstream_id=ws.pk, at=at, verb=verb, text=text, actor=actor
            )
            for ws, at, verb, text, actor in self.events
        )
        webhooks.announce_all(self.occurrences)
        notify_all([make() for make in self.notices], now=self.now)
        self.events, self.occurrences, self.tasks, self.notices = [], [], [], []


def _about(ws: Workstream, recipients: list[Membership], kind: str, subject: str, body: str, key: str) -> Announcement:
    return Announcement(
        recipients=recipients,
        message=Message(kind=kind, subject=subject, body=body, url=workstream_url(ws)),
        dedup_key=f"{ws.organization_id}:{ws.kpi_id}:{ws.pk}:{key}",
        workstream=ws,
    )


def save_fields(objs: list[Model], fields: Iterable[str]) -> None:
    """bulk_update in one UPDATE whose CASEs name each distinct value once, with the rows that take it. Django's
    bulk_update builds one WHEN per row and field, which costs more than the rest of a batch; a batch's rows
    mostly share their new level, pass, flags and times."""
    if not objs:
        return
    model = type(objs[0])
    values: dict[str, Value | Case] = {}
    for name in fields:
        field = model._meta.get_field(name)
        rows: dict[object, list[int]] = defaultdict(list)
        for obj in objs:
            rows[getattr(obj, field.attname)].append(obj.pk)
        values[field.attname] = (
            Value(next(iter(rows)), output_field=field)
            if len(rows) == 1
            else Case(
                *(When(pk__in=pks, then=Value(value, output_field=field)) for value, pks in rows.items()),
                output_field=field,
            )
        )
    model._default_manager.filter(pk__in=[obj.pk for obj in objs]).update(**values)


def paths_among(workstreams: list[Workstream]) -> tuple[set[int], dict[int, list[tuple[int, str]]]]:
    """In one query: the ids of the workstreams with an approved path, and each one's path filers (user id, name),
    whom four eyes keep from its escalation."""
    approved, filers = set(), defaultdict(list)
    for ws_id, state, filer, name in MitigationPath.objects.filter(workstream__in=workstreams).values_list(
        "workstream_id", "state", "filed_by_id", "filed_by__name"
    ):
        if state == MitigationPath.State.APPROVED:
            approved.add(ws_id)
        filers[ws_id].append((filer, name))
    return approved, filers


def without_overdue(approved: set[int]) -> set[int]:
    """The workstreams among `approved` whose approved path has no overdue action left undone."""
    if not approved:
        return set()
    overdue = set(
        MitigationAction.objects.filter(path__workstream__in=approved, path__state=MitigationPath.State.APPROVED)
        .filter(done_at=None)
        .exclude(overdue_at=None)
        .values_list("path__workstream_id", flat=True)
    )
    return approved - overdue


def mitigated_among(workstreams: list[Workstream]) -> set[int]:
    """`mitigated` of many workstreams in two queries: the ids of those with an approved path and no overdue action
    on it."""
    return without_overdue(paths_among(workstreams)[0])


@dataclass
class Counts:
    opened: int = 0
    resolved: int = 0
    escalated: int = 0
    processed: int = 0
    # Dependencies (escalations.engine.reviews): upstream signals recorded, reviews opened, signals throttled.
    signals: int = 0
    reviews: int = 0
    throttled: int = 0


def mitigated(ws: Workstream) -> bool:
    """Escalation stops once a path is approved, unless one of its actions went overdue."""
    approved = ws.paths.filter(state=MitigationPath.State.APPROVED)
    overdue = MitigationAction.objects.filter(path__in=approved, done_at=None).exclude(overdue_at=None)
    return approved.exists() and not overdue.exists()
