"""The escalation engine's sweeps (SEMANTICS.md sections 2 and 3): status changes open and resolve episodes,
due escalations advance level by level. Celery beat runs them every minute; `tick` runs them in order.

Both are safe under two beats, two workers and redelivery: rows are claimed with SELECT ... FOR UPDATE SKIP
LOCKED in the transaction that writes the outcome, an open workstream is unique per KPI in the database, and
tasks and notifications carry dedup keys. Every step is computed from the time it was due, not from when the
sweep happened to run, so a late sweep catches up with exactly the steps (and times) it missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from escalations import webhooks
from escalations.models import (
    DependencyReview,
    EscalationPolicy,
    MitigationAction,
    MitigationPath,
    Task,
    Workstream,
    WorkstreamEvent,
)
from escalations.notifications import Announcement, Message, notify, notify_all
from escalations.timing import BusinessHours, Level, Policy, Position, Step, next_step, renotify
from governance.models import Membership, Organization, Role, User
from scorecards.models import Kpi, Status, StatusChange

log = logging.getLogger(__name__)

BATCH_SIZE = 200
BREACH = {Status.AT_RISK, Status.OFF_TRACK}
SEVERITY = {Status.STALE: 0, Status.AT_RISK: 1, Status.OFF_TRACK: 2}
OWNER_TASKS = {Task.Kind.MITIGATION, Task.Kind.DATA_FRESHNESS, Task.Kind.DEPENDENCY_REVIEW}
OPEN = [Task.State.OPEN, Task.State.ACKNOWLEDGED]


def business_hours(org: Organization) -> BusinessHours:
    return BusinessHours.of(org.tzinfo, org.business_days, org.business_start, org.business_end)


def when(at: datetime, org: Organization) -> str:
    return f"{timezone.localtime(at, org.tzinfo):%a %d %b %H:%M}"


def workstream_url(ws: Workstream) -> str:
    return reverse("workstream_detail", args=[ws.organization.slug, ws.pk])


def event(ws: Workstream, at: datetime, verb: str, text: str, actor: User | None = None) -> None:
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


class Resolver:
    """Level targets (owner, team_lead, role:, team:, user:) to the active members they name today. Named groups
    are read once per organization and resolver, so a sweep's batch resolves them with a query or two."""

    def __init__(self) -> None:
        self._groups: dict[tuple[int, str], list[Membership]] = {}

    def __call__(self, names: tuple[str, ...], kpi: Kpi) -> list[Membership]:
        people: dict[int, Membership] = {}
        for name in names:
            if name == "owner":
                found = [kpi.owner]
            elif name == "team_lead":
                found = [kpi.team.lead] if kpi.team.lead_id else []
            else:
                found = self._group(kpi.organization_id, name)
            people |= {m.pk: m for m in found if m.is_active}
        return [people[pk] for pk in sorted(people)]

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


def targets(names: tuple[str, ...], kpi: Kpi) -> list[Membership]:
    return Resolver()(names, kpi)


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


# --- status changes -> episodes ------------------------------------------------------------------


@dataclass
class Counts:
    opened: int = 0
    resolved: int = 0
    escalated: int = 0
    processed: int = 0
    # Dependencies (escalations.reviews): upstream signals recorded, reviews opened, signals throttled.
    signals: int = 0
    reviews: int = 0
    throttled: int = 0


def process_status_changes(*, now: datetime | None = None, org_id: int | None = None) -> Counts:
    """Claims unprocessed StatusChange rows (the evaluator's outbox), oldest first per KPI, and acts on them; then
    the surges; then carries both to the downstream owners as dependency reviews (escalations.reviews)."""
    from escalations import reviews  # it builds on this module

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
            # serialise everything that opens or resolves these KPIs' episodes.
            kpis = {
                kpi.pk: kpi
                for kpi in Kpi.objects.filter(pk__in={c.kpi_id for c in batch})
                .select_related("organization", "team", "owner__user")
                .order_by("pk")
                .select_for_update(of=("self",))
            }
            for change in batch:
                _apply_change(change, kpis[change.kpi_id], now, counts)
                change.processed_at = now
            StatusChange.objects.bulk_update(batch, ["processed_at"])
            counts.processed += len(batch)
            counts.signals += reviews.signals_from_changes(batch, kpis)
    counts.signals += reviews.signals_from_surges(now=now, org_id=org_id)
    counts.reviews, counts.throttled = reviews.propagate(now=now, org_id=org_id)
    _move_owner_tasks(now, org_id)
    return counts


def _apply_change(change: StatusChange, kpi: Kpi, now: datetime, counts: Counts) -> None:
    current = Workstream.objects.filter(kpi=kpi, resolved_at=None).select_related("organization").first()
    if change.new == Status.ON_TRACK:
        if current is not None:
            resolve(current, change.changed_at, Workstream.Resolution.RECOVERED, "", None, now)
            counts.resolved += 1
        return
    if change.new not in SEVERITY:  # no_data: nothing to mitigate
        return
    if current is not None:
        _raise(current, change, now)
        return
    recent = (
        Workstream.objects.filter(
            kpi=kpi, resolution=Workstream.Resolution.RECOVERED, resolved_at__gte=change.changed_at - kpi.keep_for
        )
        .select_related("organization")
        .order_by("-resolved_at")
        .first()
    )
    if recent is not None:
        _reopen(recent, change, now)
        return
    _open(kpi, change, now)
    counts.opened += 1


def _open(kpi: Kpi, change: StatusChange, now: datetime) -> Workstream:
    key, policy = policy_for(kpi)
    stale = change.new == Status.STALE
    ws = Workstream.objects.create(
        organization_id=kpi.organization_id,
        kpi=kpi,
        kind=Workstream.Kind.DATA_FRESHNESS if stale else Workstream.Kind.MITIGATION,
        severity=change.new,
        opened_at=change.changed_at,
        opened_by_change=change,
        policy_key=key,
        policy=policy.as_json(),
        next_escalation_at=change.changed_at + policy.mitigation_due if policy.levels else None,
    )
    due = change.changed_at + policy.mitigation_due
    kind = Task.Kind.DATA_FRESHNESS if stale else Task.Kind.MITIGATION
    add_task(ws, kind, kpi.owner, due, now, "0:0")
    what = "has no fresh data" if stale else f"is {change.get_new_display().lower()}"
    event(ws, change.changed_at, "opened", f"{kpi.name} {what}: {change.reason}")
    ask = "Restore its data" if stale else "File a mitigation path (root cause, actions with owners and dates)"
    notify(
        recipients=[kpi.owner],
        message=Message(
            kind=kind,
            subject=f"{kpi.name} {what}",
            body=f"{change.reason}\n\n{ask} by {when(due, kpi.organization)}.",
            url=workstream_url(ws),
        ),
        dedup_key=f"{ws.organization_id}:{kpi.pk}:{ws.pk}:opened",
        workstream=ws,
        now=now,
    )
    inhibit(ws, change.changed_at)
    return ws


def _raise(ws: Workstream, change: StatusChange, now: datetime) -> None:
    """A further change within the episode: off_track raises the severity; at_risk or stale never lowers it."""
    if change.new in BREACH and ws.kind in (Workstream.Kind.DATA_FRESHNESS, Workstream.Kind.PREVENTIVE):
        ws.kind = Workstream.Kind.MITIGATION  # data is back, or the expected impact came: the episode is a breach
    if SEVERITY[change.new] > SEVERITY[ws.severity]:
        ws.severity = change.new
    ws.save(update_fields=["kind", "severity"])
    event(ws, change.changed_at, "status", f"Now {change.get_new_display().lower()}: {change.reason}")
    if change.new == Status.STALE:
        add_task(ws, Task.Kind.DATA_FRESHNESS, ws.kpi.owner, change.changed_at + timedelta(days=1), now, "stale")
    else:  # fresh data arrived: restoring it is done
        ws.tasks.filter(kind=Task.Kind.DATA_FRESHNESS, state__in=OPEN).update(
            state=Task.State.DONE, done_at=change.changed_at
        )


def _reopen(ws: Workstream, change: StatusChange, now: datetime) -> None:
    """A breach within keep_for of a recovery continues that episode; escalation resumes where it stood."""
    ws.resolved_at, ws.resolution, ws.severity = None, "", change.new
    ws.next_escalation_at = None if mitigated(ws) or not ws.policy.get("levels") else change.changed_at
    ws.save(update_fields=["resolved_at", "resolution", "severity", "next_escalation_at"])
    event(ws, change.changed_at, "reopened", f"Breached again within keep_for of the recovery: {change.reason}")
    inhibit(ws, change.changed_at)


def resolve(ws: Workstream, at: datetime, resolution: str, reason: str, actor: User | None, now: datetime) -> None:
    ws.resolved_at, ws.resolution, ws.resolution_reason = at, resolution, reason
    ws.next_escalation_at, ws.closed_by = None, actor
    ws.save(update_fields=["resolved_at", "resolution", "resolution_reason", "next_escalation_at", "closed_by"])
    ws.tasks.filter(state__in=OPEN).update(state=Task.State.CANCELLED, done_at=at)
    label = Workstream.Resolution(resolution).label
    event(ws, at, "resolved", f"{label}{': ' + reason if reason else ''}", actor)
    # Everyone who heard about the episode hears how it ended.
    told = Membership.objects.filter(pk__in=ws.notifications.values("recipient")).select_related("user")
    notify(
        recipients=list(told),
        message=Message(
            kind="resolved", subject=f"{ws.kpi.name}: {label.lower()}", body=reason or label, url=workstream_url(ws)
        ),
        dedup_key=f"{ws.organization_id}:{ws.kpi_id}:{ws.pk}:resolved:{int(at.timestamp())}",
        workstream=ws,
        now=now,
    )
    release_downstream(ws, at)


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
    """A workstream opened within an upstream KPI's open episode waits for it: its escalation is held."""
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


def release_downstream(upstream: Workstream, at: datetime) -> None:
    """An upstream episode resolved at `at`: each open workstream waiting on it starts escalating then, its next
    step due at the later of its own time and `at`, unless another upstream episode still holds it."""
    for ws in Workstream.objects.filter(waiting_on=upstream, resolved_at=None).select_related("organization"):
        inhibit(ws, at)  # another open upstream episode that it opened within holds it on
        if ws.waiting_on_id != upstream.pk:
            continue
        ws.waiting_on = None
        if ws.next_escalation_at is not None:
            ws.next_escalation_at = max(ws.next_escalation_at, at)
        ws.save(update_fields=["waiting_on", "next_escalation_at"])
        then = f"; the next step is due {when(ws.next_escalation_at, ws.organization)}" if ws.next_escalation_at else ""
        event(ws, at, "upstream_resolved", f"Upstream {upstream.kpi.name} resolved: escalation runs again{then}")


def _move_owner_tasks(now: datetime, org_id: int | None) -> None:
    """After an ownership transfer the new owner gets the open owner tasks at once; the clock does not restart."""
    stale = Task.objects.filter(kind__in=OWNER_TASKS, state__in=OPEN).exclude(assignee_id=F("kpi__owner_id"))
    if org_id:
        stale = stale.filter(organization_id=org_id)
    with transaction.atomic():
        for task in stale.select_related(
            "kpi__owner__user", "kpi__organization", "workstream__organization"
        ).select_for_update(skip_locked=True, of=("self",)):
            previous = task.assignee_id
            task.assignee = task.kpi.owner
            task.save(update_fields=["assignee"])
            if task.workstream is not None:
                event(
                    task.workstream,
                    now,
                    "owner_changed",
                    f"Open task moved to the new owner, {task.kpi.owner.user.name}",
                )
                notify(
                    recipients=[task.kpi.owner],
                    message=Message(
                        kind=task.kind,
                        subject=f"You now own {task.kpi.name}: {task.get_kind_display().lower()}",
                        body=f"Due {when(task.due_at, task.workstream.organization)}.",
                        url=workstream_url(task.workstream),
                    ),
                    dedup_key=f"{task.organization_id}:{task.kpi_id}:{task.workstream_id}:moved:{task.pk}:{previous}",
                    workstream=task.workstream,
                    now=now,
                )
            else:  # a dependency review: it belongs to the KPI, not to an episode
                org = task.kpi.organization
                notify(
                    recipients=[task.kpi.owner],
                    message=Message(
                        kind=task.kind,
                        subject=f"You now own {task.kpi.name}: {task.get_kind_display().lower()}",
                        body=f"Due {when(task.due_at, org)}.",
                        url=reverse("kpi_detail", args=[org.slug, task.kpi_id]),
                    ),
                    dedup_key=f"{task.organization_id}:{task.kpi_id}:review{task.review_id}:moved:{task.pk}:{previous}",
                    now=now,
                )


# --- escalation ----------------------------------------------------------------------------------


def mitigated(ws: Workstream) -> bool:
    """Escalation stops once a path is approved, unless one of its actions went overdue."""
    approved = ws.paths.filter(state=MitigationPath.State.APPROVED)
    overdue = MitigationAction.objects.filter(path__in=approved, done_at=None).exclude(overdue_at=None)
    return approved.exists() and not overdue.exists()


def advance_escalations(*, now: datetime | None = None, org_id: int | None = None) -> Counts:
    """Flags overdue actions, then advances every workstream whose next escalation step is due, a batch at a time:
    what a batch needs is read in a few queries, and its tasks and notifications are written in bulk."""
    from escalations import reviews  # it builds on this module

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
            held = _held_by_upstream(batch, now)
            approved = set(
                MitigationPath.objects.filter(workstream__in=batch, state=MitigationPath.State.APPROVED).values_list(
                    "workstream_id", flat=True
                )
            )
            overdue = set(
                MitigationAction.objects.filter(path__workstream__in=batch, path__state=MitigationPath.State.APPROVED)
                .filter(done_at=None)
                .exclude(overdue_at=None)
                .values_list("path__workstream_id", flat=True)
            )
            resolve, tasks, announcements = Resolver(), [], []
            for ws in batch:
                if ws.pk in held:
                    continue
                done = ws.pk in approved and ws.pk not in overdue
                counts.escalated += _advance(ws, now, done, resolve, tasks, announcements)
            _supersede(tasks)
            Task.objects.bulk_create(tasks, ignore_conflicts=True)
            notify_all(announcements, now=now)
            Workstream.objects.bulk_update(
                batch, ["level", "escalation_pass", "renotify", "next_escalation_at", "exhausted_at", "waiting_on"]
            )


def _held_by_upstream(batch: list[Workstream], now: datetime) -> set[int]:
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
            event(ws, now, "waiting_on_upstream", f"Escalation waits on upstream: {within[0][1]} has an open episode")
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
    Task.objects.filter(pk__in=ids).update(state=Task.State.CANCELLED)


def due_steps(
    episode: Workstream | DependencyReview,
    kpi: Kpi,
    now: datetime,
    resolve: Resolver,
    skipped: Callable[[Step], None],
    exhausted: Callable[[datetime], None],
) -> Iterator[tuple[Step, list[Membership]]]:
    """Every escalation step of a workstream or a dependency review due by `now`, each at its own time, with the
    people it notifies. Moves the episode's escalation state (level, pass, renotify, next_escalation_at,
    exhausted_at) along as it goes; `skipped` hears of a level naming nobody, `exhausted` of the end."""
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
        people = resolve(policy.levels[step.level - 1].targets, kpi)
        if not people:
            skipped(step)
            episode.next_escalation_at = step.at  # the next level is due at once
            continue
        yield step, people
        episode.next_escalation_at = step.then


def step_key(step: Step) -> str:
    return f"{step.level}:{step.pass_}:{int(step.at.timestamp())}"


def _advance(
    ws: Workstream,
    now: datetime,
    mitigated_now: bool,
    resolve: Resolver,
    tasks: list[Task],
    announcements: list[Announcement],
) -> int:
    """Runs every step due by `now`, each at its own time; returns how many levels were notified."""
    if mitigated_now:
        ws.next_escalation_at = None
        return 0
    notified = 0
    steps = due_steps(
        ws,
        ws.kpi,
        now,
        resolve,
        skipped=lambda step: event(
            ws, step.at, "level_skipped", f"Level {step.level} (pass {step.pass_}) names nobody active: skipped"
        ),
        exhausted=lambda at: _exhaust(ws, at, now),
    )
    for step, people in steps:
        key = step_key(step)
        tasks += [
            new_task(
                ws, Task.Kind.ESCALATION, person, step.then, now, key, level=step.level, escalation_pass=step.pass_
            )
            for person in people
        ]
        names = ", ".join(p.user.name for p in people)
        event(ws, step.at, "escalated", f"Escalated to level {step.level} (pass {step.pass_}): {names}")
        announcements.append(
            Announcement(
                recipients=people,
                message=Message(
                    kind=Task.Kind.ESCALATION,
                    subject=f"Escalation: {ws.kpi.name} is {ws.get_severity_display().lower()}, no mitigation approved",
                    body=(
                        f"Opened {when(ws.opened_at, ws.organization)}; owner "
                        f"{ws.kpi.owner.user.name}. Review the mitigation path or acknowledge that you are on it."
                    ),
                    url=workstream_url(ws),
                ),
                dedup_key=f"{ws.organization_id}:{ws.kpi_id}:{ws.pk}:{key}",
                workstream=ws,
            )
        )
        notified += 1
    return notified


def _exhaust(ws: Workstream, at: datetime, now: datetime) -> None:
    skipped = not ws.tasks.filter(kind=Task.Kind.ESCALATION).exists()
    why = "no level named anyone active" if skipped else "every level and pass was notified"
    event(ws, at, "exhausted", f"Escalation exhausted: {why}, and no mitigation path is approved")
    notify(
        recipients=admins(ws.organization_id),
        message=Message(
            kind="exhausted",
            subject=f"Escalation exhausted: {ws.kpi.name}",
            body=f"{why.capitalize()}; {ws.kpi.name} still has no approved mitigation path. Decide what happens next.",
            url=workstream_url(ws),
        ),
        dedup_key=f"{ws.organization_id}:{ws.kpi_id}:{ws.pk}:exhausted",
        workstream=ws,
        now=now,
    )


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
        for action in candidates.select_related(
            "path__workstream__organization", "path__workstream__kpi", "owner__user"
        ).select_for_update(skip_locked=True, of=("self",)):
            ws = action.path.workstream
            if action.due >= timezone.localtime(now, ws.organization.tzinfo).date():
                continue
            action.overdue_at = now
            action.save(update_fields=["overdue_at"])
            add_task(ws, Task.Kind.ACTION, action.owner, now, now, f"action{action.pk}", action=action)
            event(
                ws,
                now,
                "action_overdue",
                f"Action overdue ({action.owner.user.name}, due {action.due:%d %b}): {action.description}",
            )
            notify(
                recipients=[action.owner],
                message=Message(
                    kind=Task.Kind.ACTION,
                    subject=f"Overdue action for {ws.kpi.name}",
                    body=f"{action.description}\n\nDue {action.due:%a %d %b}. Mark it done or record its progress.",
                    url=workstream_url(ws),
                ),
                dedup_key=f"{ws.organization_id}:{ws.kpi_id}:{ws.pk}:action{action.pk}",
                workstream=ws,
                now=now,
            )
            Workstream.objects.filter(pk=ws.pk).update(
                level=0, escalation_pass=0, renotify=False, exhausted_at=None, next_escalation_at=now
            )
