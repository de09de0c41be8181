"""The escalation engine's sweeps (SEMANTICS.md sections 2 and 3): status changes open and resolve episodes,
due escalations advance level by level. Celery beat runs them every minute; `tick` runs them in order.

Both are safe under two beats, two workers and redelivery: rows are claimed with SELECT ... FOR UPDATE SKIP
LOCKED in the transaction that writes the outcome, an open workstream is unique per KPI in the database, and
tasks and notifications carry dedup keys. Every step is computed from the time it was due, not from when the
sweep happened to run, so a late sweep catches up with exactly the steps (and times) it missed.

Both work a batch at a time in a constant number of queries, whatever the batch's size: what a batch needs is
read up front, its steps run in memory in the order the rules give (Episodes, the escalation loop), and what they
write is gathered in a Journal and stored in bulk at the end of the batch, in the same transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, Exists, F, Model, OuterRef, Q, Value, When
from django.urls import reverse
from django.utils import timezone

from dependencies.models import Dependency
from escalations.engine.timing import BusinessHours, Level, Policy, Position, Step, next_step, renotify
from escalations.models import (
    DependencyReview,
    EscalationPolicy,
    MitigationAction,
    MitigationPath,
    Notification,
    Task,
    Workstream,
    WorkstreamEvent,
)
from escalations.notify import webhooks
from escalations.notify.fanout import Announcement, Message, notify_all
from governance.models import Membership, Organization, Role, User
from scorecards.models import Kpi, Status, StatusChange

log = logging.getLogger(__name__)

BATCH_SIZE = 200
BREACH = {Status.AT_RISK, Status.OFF_TRACK}
SEVERITY = {Status.STALE: 0, Status.AT_RISK: 1, Status.OFF_TRACK: 2}
# Dependency review tasks follow their KPIs' owners in escalations.engine.reviews.follow_owners: one task may list the
# reviews of several KPIs, and only some of them may change hands.
OWNER_TASKS = {Task.Kind.MITIGATION, Task.Kind.DATA_FRESHNESS}
OPEN = [Task.State.OPEN, Task.State.ACKNOWLEDGED]


def business_hours(org: Organization) -> BusinessHours:
    return BusinessHours.of(org.tzinfo, org.business_days, org.business_start, org.business_end)


def when(at: datetime, org: Organization) -> str:
    return f"{timezone.localtime(at, org.tzinfo):%a %d %b %H:%M}"


def plain_when(at: datetime, org: Organization) -> str:
    """A time as the pages say it, in the organization's zone: "Fri 4 Dec 09:00"."""
    local = timezone.localtime(at, org.tzinfo)
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def workstream_url(ws: Workstream) -> str:
    return reverse("workstream_detail", args=[ws.organization.slug, ws.pk])


def event(ws: Workstream, at: datetime, verb: str, text: str, actor: User | None = None) -> None:
    """One event now (a person's action); a sweep's batch gathers its events in a Journal instead."""
    WorkstreamEvent.objects.create(
        organization_id=ws.organization_id, workstream=ws, at=at, verb=verb, text=text, actor=actor
    )
    # The organization's webhooks hear about it in this same transaction (webhooks.VERBS says which verbs).
    webhooks.announce(ws, at, verb, text)


def policy_for(kpi: Kpi) -> tuple[str, Policy]:
    """The KPI's policy (its own, else its team's, else the organization's default) as a snapshot."""
    key = kpi.escalation or kpi.team.escalation or kpi.organization.default_escalation
    stored = (
        EscalationPolicy.objects.filter(organization_id=kpi.organization_id, key=key, archived_at=None)
        .prefetch_related("levels")
        .first()
        if key
        else None
    )
    if stored is None:  # nobody to escalate to: the owner's task alone, due after the default time
        return "", Policy(settings.DEFAULT_MITIGATION_DUE, timedelta(hours=4), 0, ())
    levels = tuple(Level(tuple(lv.targets), lv.wait, lv.business_hours) for lv in stored.levels.all())
    return stored.key, Policy(stored.mitigation_due, stored.ack_timeout, stored.repeat, levels)


def policies_for(kpis: Iterable[Kpi]) -> dict[int, tuple[str, Policy]]:
    """policy_for of many KPIs (their team and organization loaded) in two queries, whatever their number."""
    kpis = list(kpis)
    keys = {k.pk: k.escalation or k.team.escalation or k.organization.default_escalation for k in kpis}
    stored = {
        (p.organization_id, p.key): (
            p.key,
            Policy(
                p.mitigation_due,
                p.ack_timeout,
                p.repeat,
                tuple(Level(tuple(lv.targets), lv.wait, lv.business_hours) for lv in p.levels.all()),
            ),
        )
        for p in EscalationPolicy.objects.filter(
            organization_id__in={k.organization_id for k in kpis}, key__in=set(keys.values()) - {""}, archived_at=None
        ).prefetch_related("levels")
    }
    default = "", Policy(settings.DEFAULT_MITIGATION_DUE, timedelta(hours=4), 0, ())
    return {k.pk: stored.get((k.organization_id, keys[k.pk]), default) for k in kpis}


ROLE_WORDS = {"admin": "admins", "executive": "executives", "member": "members"}


def target_words(name: str) -> str:
    """A level's target as a timeline says it, without a query: "team lead", "executives", "team ops"."""
    if name in ("owner", "team_lead"):
        return {"owner": "KPI owner", "team_lead": "team lead"}[name]
    kind, _, value = name.partition(":")
    return ROLE_WORDS.get(value, value) if kind == "role" else f"{kind} {value}" if kind == "team" else value


def and_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class Resolved:
    """Who a level notifies in one episode; `left_out` names the people it named who decide nothing here (four
    eyes: the KPI's owner, the path's filer), each with the reason."""

    people: list[Membership]
    left_out: list[tuple[str, str]]  # (name, reason)
    fallback: bool = False  # the policy left nobody: the organization's executives, else its admins

    def skip_reason(self) -> str:
        if not self.left_out:
            return "names nobody active"
        reasons: dict[str, list[str]] = {}
        for name, why in self.left_out:
            reasons.setdefault(why, []).append(name)
        return "; ".join(f"{and_names(names)} {why}" for why, names in reasons.items())


class Resolver:
    """Level targets (owner, team_lead, role:, team:, user:) to the active members they name today. Named groups
    are read once per organization and resolver, so a sweep's batch resolves them with a query or two.

    Four eyes (SEMANTICS.md section 3): `exclude` maps the user ids who decide nothing in an episode (its KPI's
    owner, its paths' filers; a dependency review's downstream owner) to the reason; they are never escalation
    targets. A level naming only them is empty; a policy whose every level is empty falls back to the
    organization's executives, else its admins (never the excluded), at its first level."""

    def __init__(self) -> None:
        self._groups: dict[tuple[int, str], list[Membership]] = {}

    def __call__(self, names: tuple[str, ...], kpi: Kpi, exclude: Mapping[int, str] | None = None) -> list[Membership]:
        return self.level(names, kpi, exclude or {}).people

    def level(self, names: tuple[str, ...], kpi: Kpi, exclude: Mapping[int, str]) -> Resolved:
        people: dict[int, Membership] = {}
        for name in names:
            if name == "owner":
                found = [kpi.owner]
            elif name == "team_lead":
                found = [kpi.team.lead] if kpi.team.lead_id else []
            else:
                found = self._group(kpi.organization_id, name)
            people |= {m.pk: m for m in found if m.is_active}
        kept = [people[pk] for pk in sorted(people) if people[pk].user_id not in exclude]
        if kept or not people:
            return Resolved(kept, [])
        return Resolved([], [(people[pk].user.name, exclude[people[pk].user_id]) for pk in sorted(people)])

    def step(self, policy: Policy, level: int, kpi: Kpi, exclude: Mapping[int, str]) -> Resolved:
        """Who `level` of `policy` notifies in this episode, the fallback included."""
        found = self.level(policy.levels[level - 1].targets, kpi, exclude)
        if found.people or level != 1 or any(self.level(lv.targets, kpi, exclude).people for lv in policy.levels[1:]):
            return found
        for role in ("executive", "admin"):
            people = [m for m in self._group(kpi.organization_id, f"role:{role}") if m.user_id not in exclude]
            if people:
                return Resolved(people, found.left_out, fallback=True)
        return found

    def _group(self, org_id: int, name: str) -> list[Membership]:
        if (org_id, name) not in self._groups:
            kind, _, value = name.partition(":")
            wanted = {"role": Q(role=value), "team": Q(teams__key=value), "user": Q(user__email__iexact=value)}
            members = Membership.objects.filter(organization_id=org_id, is_active=True).select_related("user")
            self._groups[(org_id, name)] = (
                list(members.filter(wanted[kind]).distinct())
                if kind in wanted and (kind != "role" or value in Role.values)
                else []
            )
        return self._groups[(org_id, name)]


def four_eyes(kpi: Kpi, filers: Iterable[tuple[int, str]] = ()) -> dict[int, str]:
    """The user ids who are never escalation targets of an episode of `kpi`, with the reason: its owner, and the
    filers (user id, name) of its mitigation paths."""
    excluded = {filer: "filed the mitigation path" for filer, _ in filers}
    excluded[kpi.owner.user_id] = "owns this KPI"
    return excluded


def admins(org_id: int) -> list[Membership]:
    return list(
        Membership.objects.filter(organization_id=org_id, role=Role.ADMIN, is_active=True).select_related("user")
    )


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


# --- status changes -> episodes ------------------------------------------------------------------


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


def process_status_changes(*, now: datetime | None = None, org_id: int | None = None) -> Counts:
    """Claims unprocessed StatusChange rows (the evaluator's outbox), oldest first per KPI, and acts on them; then
    the surges; then carries both to the downstream owners as dependency reviews (escalations.engine.reviews)."""
    from escalations.engine import reviews  # it builds on this module

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
            counts.signals += reviews.signals_from_changes(batch, kpis)
    counts.signals += reviews.signals_from_surges(now=now, org_id=org_id)
    counts.reviews, counts.throttled = reviews.propagate(now=now, org_id=org_id)
    _move_owner_tasks(now, org_id)
    return counts


class Episodes:
    """The episodes a batch of status changes touches, held in memory while its changes apply one by one, exactly
    as the rules say: the open and recently recovered workstreams of the batch's KPIs, the open ones waiting on an
    episode the batch may resolve, and the open ones of the KPIs directly upstream of any the batch may hold
    (inhibition). load() reads them in a constant number of queries, flush() writes the outcome in bulk.

    A batch holds one change per KPI (process_status_changes), so each episode is opened, raised, reopened or
    resolved at most once in it (a hold or a release by an upstream may come on top): its tasks can be written
    after the fact, and nobody was told about an episode earlier in the batch that resolves it."""

    def __init__(self, now: datetime, kpis: dict[int, Kpi]) -> None:
        self.now, self.kpis = now, kpis
        self.journal = Journal(now)
        self.open: dict[int, Workstream] = {}  # KPI id -> its open workstream
        self.known: set[int] = set()  # the KPIs whose open workstream (or its absence) `open` tells
        self.upstreams: dict[int, list[int]] = defaultdict(list)  # KPI id -> its direct upstream KPIs
        # id(workstream) -> (it, the upstream episode it waits on or None) for every hold the batch set or read.
        self.holds: dict[int, tuple[Workstream, Workstream | None]] = {}
        self.recovered: dict[int, Workstream] = {}  # KPI id -> its newest episode recovered within keep_for
        self.mitigated: set[int] = set()
        self.policies: dict[int, tuple[str, Policy]] = {}
        self.told: dict[int, list[Membership]] = {}  # workstream id -> everyone notified about it
        self.resolving: dict[int, Workstream] = {}  # workstream id -> an open one the batch resolves
        self.created: list[Workstream] = []
        self.changed: dict[int, tuple[Workstream, set[str]]] = {}  # id(workstream) -> (it, fields to save)
        self.cancelled: list[tuple[Workstream, datetime]] = []  # resolved: their open tasks end then
        self.refreshed: list[tuple[Workstream, datetime]] = []  # fresh data: their data-freshness tasks are done

    # --- reading ---

    def load(self, changes: list[StatusChange]) -> None:
        ids = {c.kpi_id for c in changes}
        self._know(Workstream.objects.filter(kpi_id__in=ids, resolved_at=None), ids)
        starting = [c for c in changes if c.new in SEVERITY and c.kpi_id not in self.open]
        if starting:
            # A breach within keep_for of a recovery continues that episode (the newest such one).
            since = {c.kpi_id: c.changed_at - self.kpis[c.kpi_id].keep_for for c in starting}
            for ws in Workstream.objects.filter(
                kpi_id__in=since, resolution=Workstream.Resolution.RECOVERED, resolved_at__gte=min(since.values())
            ).order_by("resolved_at", "id"):
                if ws.resolved_at >= since[ws.kpi_id]:
                    self.recovered[ws.kpi_id] = self._attach(ws)
            if self.recovered:
                self.mitigated = mitigated_among(list(self.recovered.values()))
            fresh = [self.kpis[c.kpi_id] for c in starting if c.kpi_id not in self.recovered]
            if fresh:
                self.policies = policies_for(fresh)
        resolving = [self.open[c.kpi_id] for c in changes if c.new == Status.ON_TRACK and c.kpi_id in self.open]
        held = self.load_resolving(resolving)
        self.load_upstreams({c.kpi_id for c in starting} | held)

    def load_resolving(self, resolving: list[Workstream]) -> set[int]:
        """Who was told about each episode about to resolve, and the open episodes waiting on them (their KPIs are
        returned: a release looks at their other upstreams)."""
        if not resolving:
            return set()
        for ws in resolving:
            self._know([ws], {ws.kpi_id})
        by_pk = self.resolving = {ws.pk: ws for ws in resolving}
        # Episodes that recovered while held let go of an upstream episode that ends: a breach within keep_for
        # reopens them, and a hold on an episode already over would keep them from ever escalating again.
        Workstream.objects.filter(waiting_on_id__in=by_pk).exclude(resolved_at=None).update(waiting_on=None)
        pairs = list(
            Notification.objects.filter(workstream_id__in=by_pk).values_list("workstream_id", "recipient_id").distinct()
        )
        people = Membership.objects.in_bulk({person for _, person in pairs})
        for ws_id, person in sorted(pairs):
            self.told.setdefault(ws_id, []).append(people[person])
        waiting = set()
        for ws in Workstream.objects.filter(resolved_at=None, waiting_on_id__in=by_pk).select_related(
            "organization", "kpi"
        ):
            ws = self._know([ws], {ws.kpi_id})[0]
            self.holds[id(ws)] = (ws, by_pk[ws.waiting_on_id])
            waiting.add(ws.kpi_id)
        return waiting

    def load_upstreams(self, kpi_ids: set[int]) -> None:
        """The direct upstream KPIs of `kpi_ids` and their open episodes, for upstream_episode."""
        if not kpi_ids:
            return
        edges = Dependency.objects.filter(downstream_id__in=kpi_ids).values_list("downstream_id", "upstream_id")
        for down, up in edges:
            self.upstreams[down].append(up)
        unknown = {up for down in kpi_ids for up in self.upstreams.get(down, ())} - self.known
        if unknown:
            self._know(
                Workstream.objects.filter(kpi_id__in=unknown, resolved_at=None).select_related("organization", "kpi"),
                unknown,
            )

    def _know(self, workstreams: Iterable[Workstream], kpi_ids: set[int]) -> list[Workstream]:
        """Records the open workstreams of `kpi_ids`; one already in memory stays the one used."""
        found = []
        for ws in workstreams:
            held = self.open.get(ws.kpi_id)
            if held is None or held.pk != ws.pk:
                held = self.open[ws.kpi_id] = self._attach(ws)
            found.append(held)
        self.known |= kpi_ids
        return found

    def _attach(self, ws: Workstream) -> Workstream:
        if ws.kpi_id in self.kpis:  # the locked row, with its team, organization and owner already loaded
            ws.kpi = self.kpis[ws.kpi_id]
            ws.organization = ws.kpi.organization
        return ws

    # --- the rules, one change at a time ---

    def apply(self, change: StatusChange, counts: Counts) -> None:
        kpi = self.kpis[change.kpi_id]
        current = self.open.get(kpi.pk)
        if change.new == Status.ON_TRACK:
            if current is not None:
                self.resolve(current, change.changed_at, Workstream.Resolution.RECOVERED, "", None)
                counts.resolved += 1
            return
        if change.new not in SEVERITY:  # no_data: nothing to mitigate
            return
        if current is not None:
            self._raise(current, change)
        elif kpi.pk in self.recovered:
            self._reopen(self.recovered[kpi.pk], change)
        else:
            self._open(kpi, change)
            counts.opened += 1

    def _open(self, kpi: Kpi, change: StatusChange) -> None:
        key, policy = self.policies[kpi.pk]
        stale = change.new == Status.STALE
        ws = Workstream(
            organization=kpi.organization,
            kpi=kpi,
            kind=Workstream.Kind.DATA_FRESHNESS if stale else Workstream.Kind.MITIGATION,
            severity=change.new,
            opened_at=change.changed_at,
            opened_by_change=change,
            policy_key=key,
            policy=policy.as_json(),
            next_escalation_at=change.changed_at + policy.mitigation_due if policy.levels else None,
        )
        self.created.append(ws)
        self.open[kpi.pk] = ws
        due = change.changed_at + policy.mitigation_due
        kind = Task.Kind.DATA_FRESHNESS if stale else Task.Kind.MITIGATION
        self.journal.task(ws, kind, kpi.owner, due, "0:0")
        what = "has no fresh data" if stale else f"is {change.get_new_display().lower()}"
        self.journal.event(ws, change.changed_at, "opened", f"{kpi.name} {what}: {change.reason}")
        ask = "Restore its data" if stale else "File a mitigation path (root cause, actions with owners and dates)"
        self.journal.notify(
            ws,
            [kpi.owner],
            kind,
            f"{kpi.name} {what}",
            f"{change.reason}\n\n{ask} by {when(due, kpi.organization)}.",
            "opened",
        )
        self.inhibit(ws, change.changed_at)

    def _raise(self, ws: Workstream, change: StatusChange) -> None:
        """A further change within the episode: off_track raises the severity; at_risk or stale never lowers it."""
        if change.new in BREACH and ws.kind in (Workstream.Kind.DATA_FRESHNESS, Workstream.Kind.PREVENTIVE):
            ws.kind = Workstream.Kind.MITIGATION  # data is back, or the expected impact came: the episode is a breach
        if SEVERITY[change.new] > SEVERITY[ws.severity]:
            ws.severity = change.new
        self._save(ws, "kind", "severity")
        self.journal.event(ws, change.changed_at, "status", f"Now {change.get_new_display().lower()}: {change.reason}")
        if change.new == Status.STALE:
            owner = ws.kpi.owner
            self.journal.task(ws, Task.Kind.DATA_FRESHNESS, owner, change.changed_at + timedelta(days=1), "stale")
        else:  # fresh data arrived: restoring it is done
            self.refreshed.append((ws, change.changed_at))

    def _reopen(self, ws: Workstream, change: StatusChange) -> None:
        """A breach within keep_for of a recovery continues that episode; escalation resumes where it stood."""
        ws.resolved_at, ws.resolution, ws.severity = None, "", change.new
        ws.next_escalation_at = None if ws.pk in self.mitigated or not ws.policy.get("levels") else change.changed_at
        self._save(ws, "resolved_at", "resolution", "severity", "next_escalation_at")
        self.open[ws.kpi_id] = ws
        if ws.waiting_on_id in self.resolving:  # still held by an upstream episode that resolves later in the batch
            self.holds[id(ws)] = (ws, self.resolving[ws.waiting_on_id])
        self.journal.event(
            ws, change.changed_at, "reopened", f"Breached again within keep_for of the recovery: {change.reason}"
        )
        self.inhibit(ws, change.changed_at)

    def resolve(self, ws: Workstream, at: datetime, resolution: str, reason: str, actor: User | None) -> None:
        ws.resolved_at, ws.resolution, ws.resolution_reason = at, resolution, reason
        ws.next_escalation_at, ws.closed_by = None, actor
        self._save(ws, "resolved_at", "resolution", "resolution_reason", "next_escalation_at", "closed_by")
        if self.open.get(ws.kpi_id) is ws:
            del self.open[ws.kpi_id]
        self.cancelled.append((ws, at))
        label = Workstream.Resolution(resolution).label
        self.journal.event(ws, at, "resolved", f"{label}{': ' + reason if reason else ''}", actor)
        # Everyone who heard about the episode hears how it ended.
        self.journal.notify(
            ws,
            self.told.get(ws.pk, []),
            "resolved",
            f"{ws.kpi.name}: {label.lower()}",
            reason or label,
            f"resolved:{int(at.timestamp())}",
        )
        self.release_downstream(ws, at)

    # --- inhibition (SEMANTICS.md section 4) ---

    def upstream_episode(self, kpi_id: int, opened_at: datetime) -> Workstream | None:
        """The oldest open workstream of a direct upstream KPI that opened no later than `opened_at`."""
        found = [self.open[up] for up in self.upstreams.get(kpi_id, ()) if up in self.open]
        return min((ws for ws in found if ws.opened_at <= opened_at), key=self._age, default=None)

    def _age(self, ws: Workstream) -> tuple:
        # Ids order episodes opened at the same time; one opened in this batch gets a higher id than any stored.
        return (ws.opened_at, 0, ws.pk) if ws.pk is not None else (ws.opened_at, 1, self.created.index(ws))

    def _waits_on(self, ws: Workstream, upstream: Workstream) -> bool:
        if id(ws) in self.holds:
            holder = self.holds[id(ws)][1]
            return holder is upstream or (holder is not None and holder.pk is not None and holder.pk == upstream.pk)
        return ws.waiting_on_id is not None and ws.waiting_on_id == upstream.pk

    def inhibit(self, ws: Workstream, at: datetime) -> None:
        """A workstream opened within an upstream KPI's open episode waits for it: its escalation is held."""
        upstream = self.upstream_episode(ws.kpi_id, ws.opened_at)
        if upstream is None or self._waits_on(ws, upstream):
            return
        self.holds[id(ws)] = (ws, upstream)
        self._save(ws, "waiting_on")
        self.journal.event(
            ws,
            at,
            "waiting_on_upstream",
            f"Escalation waits on upstream: {upstream.kpi.name} has an open episode since "
            f"{when(upstream.opened_at, ws.organization)}; it starts when that one resolves",
        )

    def release_downstream(self, upstream: Workstream, at: datetime) -> None:
        """An upstream episode resolved at `at`: each open workstream waiting on it starts escalating then, its next
        step due at the later of its own time and `at`, unless another upstream episode still holds it."""
        for ws, holder in list(self.holds.values()):
            if holder is not upstream or self.open.get(ws.kpi_id) is not ws:
                continue
            self.inhibit(ws, at)  # another open upstream episode that it opened within holds it on
            if self.holds[id(ws)][1] is not upstream:
                continue
            self.holds[id(ws)] = (ws, None)
            if ws.next_escalation_at is not None:
                ws.next_escalation_at = max(ws.next_escalation_at, at)
            self._save(ws, "waiting_on", "next_escalation_at")
            due = ws.next_escalation_at
            then = f"; the next step is due {when(due, ws.organization)}" if due else ""
            self.journal.event(
                ws, at, "upstream_resolved", f"Upstream {upstream.kpi.name} resolved: escalation runs again{then}"
            )

    # --- writing ---

    def _save(self, ws: Workstream, *fields: str) -> None:
        # Only the fields a rule changed are written: a concurrent escalation sweep owns level, pass and the rest.
        self.changed.setdefault(id(ws), (ws, set()))[1].update(fields)

    def flush(self) -> None:
        # A hold on an episode opened in this batch is written once that one has its id.
        later = set()
        for ws, holder in self.holds.values():
            if holder is not None and holder.pk is None:
                later.add(id(ws))
            else:
                ws.waiting_on_id = holder.pk if holder else None
        created = {id(ws) for ws in self.created}
        Workstream.objects.bulk_create(self.created)
        for key in later:
            ws, holder = self.holds[key]
            ws.waiting_on_id = holder.pk
        groups: dict[tuple[str, ...], list[Workstream]] = defaultdict(list)
        for key, (ws, fields) in self.changed.items():
            if key in created:  # inserted with its fields, but for a hold on another new one
                fields = fields & ({"waiting_on"} if key in later else set())
            if fields:
                groups[tuple(sorted(fields))].append(ws)
        for fields, workstreams in sorted(groups.items()):
            save_fields(workstreams, fields)
        # After the workstreams' rows: an escalation sweep that held one has committed its tasks by now.
        if self.cancelled:
            Task.objects.filter(workstream_id__in=[ws.pk for ws, _ in self.cancelled], state__in=OPEN).update(
                state=Task.State.CANCELLED, done_at=_at_of(self.cancelled)
            )
        if self.refreshed:
            Task.objects.filter(
                workstream_id__in=[ws.pk for ws, _ in self.refreshed], kind=Task.Kind.DATA_FRESHNESS, state__in=OPEN
            ).update(state=Task.State.DONE, done_at=_at_of(self.refreshed))
        self.journal.flush()


def _at_of(pairs: list[tuple[Workstream, datetime]]) -> Case:
    """done_at per workstream in one UPDATE: a CASE over the workstreams, grouped by time."""
    by_time: dict[datetime, list[int]] = defaultdict(list)
    for ws, at in pairs:
        by_time[at].append(ws.pk)
    return Case(
        *(When(workstream_id__in=ids, then=Value(at)) for at, ids in by_time.items()), output_field=DateTimeField()
    )


def resolve(ws: Workstream, at: datetime, resolution: str, reason: str, actor: User | None, now: datetime) -> None:
    """Ends the episode at `at` (an executive's decision; recoveries are resolved by process_status_changes). `ws`
    is locked, with its organization and KPI owner loaded."""
    episodes = Episodes(now, {})
    episodes.load_upstreams(episodes.load_resolving([ws]))
    episodes.resolve(ws, at, resolution, reason, actor)
    episodes.flush()


# --- inhibition (SEMANTICS.md section 4) -----------------------------------------------------------


def upstream_episode(kpi_id: int, opened_at: datetime) -> Workstream | None:
    """The oldest open workstream of a direct upstream KPI that opened no later than `opened_at`."""
    return (
        Workstream.objects.filter(
            resolved_at=None, opened_at__lte=opened_at, kpi__downstream_edges__downstream_id=kpi_id
        )
        .select_related("kpi")
        .order_by("opened_at", "id")
        .first()
    )


def inhibit(ws: Workstream, at: datetime) -> None:
    """A workstream opened within an upstream KPI's open episode waits for it: its escalation is held. (One
    workstream now, as a dependency review's answer opens it; process_status_changes holds a batch's at once.)"""
    upstream = upstream_episode(ws.kpi_id, ws.opened_at)
    if upstream is None or ws.waiting_on_id == upstream.pk:
        return
    ws.waiting_on = upstream
    ws.save(update_fields=["waiting_on"])
    event(
        ws,
        at,
        "waiting_on_upstream",
        f"Escalation waits on upstream: {upstream.kpi.name} has an open episode since "
        f"{when(upstream.opened_at, ws.organization)}; it starts when that one resolves",
    )


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
                        body=f"Due {when(task.due_at, ws.organization)}.",
                        url=workstream_url(ws),
                    ),
                    dedup_key=f"{task.organization_id}:{task.kpi_id}:{task.workstream_id}:moved:{task.pk}:{previous}",
                    workstream=ws,
                )
            )
        save_fields(tasks, ["assignee"])
        journal.flush()


# --- escalation ----------------------------------------------------------------------------------


def mitigated(ws: Workstream) -> bool:
    """Escalation stops once a path is approved, unless one of its actions went overdue."""
    approved = ws.paths.filter(state=MitigationPath.State.APPROVED)
    overdue = MitigationAction.objects.filter(path__in=approved, done_at=None).exclude(overdue_at=None)
    return approved.exists() and not overdue.exists()


def advance_escalations(*, now: datetime | None = None, org_id: int | None = None) -> Counts:
    """Flags overdue actions, then advances every workstream whose next escalation step is due, a batch at a time:
    what a batch needs is read in a few queries, and its events, tasks and notifications are written in bulk."""
    from escalations.engine import reviews  # it builds on this module

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
                counts.escalated += reviews.advance_reviews(now=now, org_id=org_id)
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


def _supersede(tasks: list[Task]) -> None:
    """A person escalated to again on a workstream keeps one open escalation task there: the newest. Older ones,
    stored or created earlier in this batch (a late sweep catching up), are cancelled."""
    newest = {(t.workstream_id, t.assignee_id): t for t in tasks}
    for task in tasks:
        if newest[(task.workstream_id, task.assignee_id)] is not task:
            task.state = Task.State.CANCELLED
    older = Task.objects.filter(
        workstream_id__in={ws for ws, _ in newest}, kind=Task.Kind.ESCALATION, state__in=OPEN
    ).values_list("pk", "workstream_id", "assignee_id")
    ids = [pk for pk, ws, person in older if (ws, person) in newest]
    if ids:
        Task.objects.filter(pk__in=ids).update(state=Task.State.CANCELLED)


def due_steps(
    episode: Workstream | DependencyReview,
    kpi: Kpi,
    now: datetime,
    resolve: Resolver,
    skipped: Callable[[Step, str], None],
    exhausted: Callable[[datetime], None],
    exclude: Mapping[int, str],
) -> Iterator[tuple[Step, Resolved]]:
    """Every escalation step of a workstream or a dependency review due by `now`, each at its own time, with the
    people it notifies (never those in `exclude`: four eyes). Moves the episode's escalation state (level, pass,
    renotify, next_escalation_at, exhausted_at) along as it goes; `skipped` hears of a level naming nobody, with the
    timeline's words for it, `exhausted` of the end."""
    policy, hours = Policy.from_json(episode.policy), business_hours(episode.organization)
    while episode.next_escalation_at is not None and episode.next_escalation_at <= now:
        if not policy.levels:
            episode.next_escalation_at = None
            return
        due, position = episode.next_escalation_at, Position(episode.level, episode.escalation_pass)
        step = renotify(policy, position, due, hours) if episode.renotify else next_step(policy, position, due, hours)
        if step.exhausted:
            episode.exhausted_at, episode.next_escalation_at = step.at, None
            exhausted(step.at)
            return
        if step.at > now:  # a business-hours level waits for the next opening
            episode.next_escalation_at = step.at
            return
        episode.level, episode.escalation_pass, episode.renotify = step.level, step.pass_, False
        found = resolve.step(policy, step.level, kpi, exclude)
        if not found.people:
            skipped(step, skip_text(policy, step, found))
            episode.next_escalation_at = step.at  # the next level is due at once
            continue
        yield step, found
        episode.next_escalation_at = step.then


def level_words(policy: Policy, step: Step) -> str:
    targets = ", ".join(target_words(name) for name in policy.levels[step.level - 1].targets)
    return f"Level {step.level} ({targets}" + (f", pass {step.pass_})" if policy.repeat else ")")


def skip_text(policy: Policy, step: Step, found: Resolved) -> str:
    """ "Level 1 (team lead) skipped: Maya Martins owns this KPI"."""
    return f"{level_words(policy, step)} skipped: {found.skip_reason()}"


def escalated_text(step: Step, found: Resolved) -> str:
    names = ", ".join(p.user.name for p in found.people)
    text = f"Escalated to level {step.level} (pass {step.pass_}): {names}"
    if found.fallback:
        why = found.skip_reason() if found.left_out else "names nobody active"
        text += f" (the policy leaves nobody else: {why})"
    return text


def step_key(step: Step) -> str:
    return f"{step.level}:{step.pass_}:{int(step.at.timestamp())}"


class Escalation:
    """One batch of due workstreams advancing: the people its levels name (a Resolver), each organization's admins
    and which workstreams ever escalated are read once for the batch; its tasks, events and notifications are
    gathered and written by flush()."""

    def __init__(self, batch: list[Workstream], now: datetime) -> None:
        self.batch, self.now = batch, now
        self.journal = Journal(now)
        self.resolve = Resolver()
        self.tasks: list[Task] = []
        self._admins: dict[int, list[Membership]] = {}
        self._escalated: set[int] | None = None
        approved, self.filers = paths_among(batch)
        self.mitigated = without_overdue(approved)

    def advance(self, ws: Workstream, mitigated_now: bool) -> int:
        """Runs every step due by `now`, each at its own time; returns how many levels were notified."""
        if mitigated_now:
            ws.next_escalation_at = None
            return 0
        notified = 0
        steps = due_steps(
            ws,
            ws.kpi,
            self.now,
            self.resolve,
            skipped=lambda step, text: self.journal.event(ws, step.at, "level_skipped", text),
            exhausted=lambda at: self._exhaust(ws, at),
            exclude=four_eyes(ws.kpi, self.filers.get(ws.pk, ())),
        )
        for step, found in steps:
            key, people = step_key(step), found.people
            self.tasks += [
                new_task(
                    ws,
                    Task.Kind.ESCALATION,
                    person,
                    step.then,
                    self.now,
                    key,
                    level=step.level,
                    escalation_pass=step.pass_,
                )
                for person in people
            ]
            self.journal.event(ws, step.at, "escalated", escalated_text(step, found))
            self.journal.notify(
                ws,
                people,
                Task.Kind.ESCALATION,
                f"Escalation: {ws.kpi.name} is {ws.get_severity_display().lower()}, no mitigation approved",
                (
                    f"Opened {when(ws.opened_at, ws.organization)}; owner "
                    f"{ws.kpi.owner.user.name}. Review the mitigation path or acknowledge that you are on it."
                ),
                key,
            )
            notified += 1
        return notified

    def _exhaust(self, ws: Workstream, at: datetime) -> None:
        notified = self._ever_escalated(ws) or any(t.workstream_id == ws.pk for t in self.tasks)
        why = "every level and pass was notified" if notified else "no level named anyone active"
        self.journal.event(ws, at, "exhausted", f"Escalation exhausted: {why}, and no mitigation path is approved")
        self.journal.notify(
            ws,
            self._admins_of(ws.organization_id),
            "exhausted",
            f"Escalation exhausted: {ws.kpi.name}",
            f"{why.capitalize()}; {ws.kpi.name} still has no approved mitigation path. Decide what happens next.",
            "exhausted",
        )

    def _ever_escalated(self, ws: Workstream) -> bool:
        # Read for the whole batch the first time a workstream runs out (rare), not per workstream.
        if self._escalated is None:
            self._escalated = set(
                Task.objects.filter(workstream__in=self.batch, kind=Task.Kind.ESCALATION).values_list(
                    "workstream_id", flat=True
                )
            )
        return ws.pk in self._escalated

    def _admins_of(self, org_id: int) -> list[Membership]:
        if org_id not in self._admins:
            self._admins[org_id] = admins(org_id)
        return self._admins[org_id]

    def flush(self) -> None:
        if self.tasks:
            _supersede(self.tasks)
            Task.objects.bulk_create(self.tasks, ignore_conflicts=True)
        self.journal.flush()


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
            action.overdue_at = now
            journal.task(ws, Task.Kind.ACTION, action.owner, now, f"action{action.pk}", action=action)
            journal.event(
                ws,
                now,
                "action_overdue",
                f"Action overdue ({action.owner.user.name}, due {action.due:%d %b}): {action.description}",
            )
            journal.notify(
                ws,
                [action.owner],
                Task.Kind.ACTION,
                f"Overdue action for {ws.kpi.name}",
                f"{action.description}\n\nDue {action.due:%a %d %b}. Mark it done or record its progress.",
                f"action{action.pk}",
            )
        MitigationAction.objects.filter(pk__in=[a.pk for a in overdue]).update(overdue_at=now)
        journal.flush()
        Workstream.objects.filter(pk__in={a.path.workstream_id for a in overdue}).update(
            level=0, escalation_pass=0, renotify=False, exhausted_at=None, next_escalation_at=now
        )
