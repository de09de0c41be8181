"""Dependency reviews (SEMANTICS.md section 4): what happens upstream reaches the direct downstream owners.

Durable rows carry it from sweep to sweep, as everywhere in the engine:

- process_status_changes turns each official change into at_risk/off_track/stale of a KPI with downstream edges,
  and each surge (SurgeSignal, claimed as status changes are), into a DependencySignal, in the transaction that
  marks the outbox row processed;
- a later phase of the same sweep propagates the signals, a batch at a time, over the direct edges: each (signal,
  downstream KPI) becomes a DependencyReviewSignal that opens a review of that KPI, joins its unanswered one, or is
  throttled by the review the same upstream reached within the edge's lag (24 h without one);
- reviews group per downstream owner: everything reaching one owner within GROUP_WINDOW of the first review of a
  window is one task (kind dependency_review) listing one review per affected KPI, each answered on its own
  ("impact" on one and "no impact" on another is a fine answer); the task is done when every review is;
- advance_escalations escalates each unanswered review level by level from next_escalation_at, as it does
  workstreams; follow_owners hands unanswered reviews to their KPI's new owner.

Concurrency: a propagation batch holds its downstream KPIs' rows (FOR NO KEY UPDATE, in id order, nothing else
locked first), and so does an answer (escalations.services.dependency_review_answer), so grouping and throttling
decide on one KPI's reviews one at a time; it then holds the owners' membership rows (NO KEY UPDATE, id order), so
two batches never open two tasks for one owner's window. Signals are claimed with SKIP LOCKED and marked in the
same transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Min, Q
from django.urls import reverse

from dependencies.models import Dependency
from escalations.models import (
    DependencyReview,
    DependencyReviewSignal,
    DependencySignal,
    Task,
    Workstream,
    WorkstreamEvent,
)
from escalations.notifications import Announcement, Message, notify, notify_all
from escalations.sweeps import (
    SEVERITY,
    Resolver,
    add_task,
    admins,
    due_steps,
    escalated_text,
    event,
    inhibit,
    policies_for,
    policy_for,
    step_key,
    when,
    workstream_url,
)
from escalations.timing import Policy
from governance.models import Membership, Organization, User
from scorecards.models import Kpi, Status, StatusChange, SurgeSignal

log = logging.getLogger(__name__)

GROUP_WINDOW = timedelta(minutes=10)  # signals this close to a review's first one join it
DEFAULT_LAG = timedelta(hours=24)  # the throttle window of an edge without a lag
BATCH_SIZE = 500
SIGNALLED = {Status.AT_RISK, Status.OFF_TRACK, Status.STALE}
OPEN = [Task.State.OPEN, Task.State.ACKNOWLEDGED]


def kpi_url(kpi: Kpi, org: Organization) -> str:
    return reverse("scorecards:kpi_detail", args=[org.slug, kpi.pk])


def span(value: timedelta) -> str:
    """A window as people say it: "7 days", "12 hours", "90 minutes"."""
    for unit, size in (("day", timedelta(days=1)), ("hour", timedelta(hours=1))):
        if value >= size and not value % size:
            n = value // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{int(value.total_seconds() // 60)} minutes"


def _with_downstream(kpi_ids: Iterable[int]) -> set[int]:
    return set(Dependency.objects.filter(upstream_id__in=set(kpi_ids)).values_list("upstream_id", flat=True).distinct())


# --- outbox rows -> signals -------------------------------------------------------------------------


def signals_from_changes(changes: list[StatusChange], kpis: dict[int, Kpi]) -> int:
    """In process_status_changes' batch transaction: the changes into a breach or stale of KPIs that something
    depends on become signals (a query to find those KPIs, one insert)."""
    relevant = [c for c in changes if c.new in SIGNALLED]
    if not relevant:
        return 0
    upstream = _with_downstream(c.kpi_id for c in relevant)
    signals = [
        DependencySignal(
            organization_id=c.organization_id,
            kpi_id=c.kpi_id,
            kind=DependencySignal.Kind.STATUS,
            at=c.changed_at,
            cause=f"{kpis[c.kpi_id].name} is {c.get_new_display().lower()}{': ' + c.reason if c.reason else ''}",
            value=c.value,
            trend=f"{c.get_old_display()} -> {c.get_new_display()}",
            status_change=c,
        )
        for c in relevant
        if c.kpi_id in upstream
    ]
    DependencySignal.objects.bulk_create(signals, ignore_conflicts=True)
    return len(signals)


def signals_from_surges(*, now: datetime, org_id: int | None) -> int:
    """Claims unprocessed SurgeSignal rows as process_status_changes claims status changes (FOR UPDATE SKIP LOCKED,
    processed_at in the same transaction); those of KPIs that something depends on become signals."""
    made = 0
    while True:
        with transaction.atomic():
            pending = SurgeSignal.objects.filter(processed_at=None)
            if org_id:
                pending = pending.filter(organization_id=org_id)
            batch = list(
                pending.select_related("kpi")
                .order_by("at", "id")
                .select_for_update(skip_locked=True, of=("self",))[:BATCH_SIZE]
            )
            if not batch:
                return made
            upstream = _with_downstream(s.kpi_id for s in batch)
            signals = [_surge_signal(s) for s in batch if s.kpi_id in upstream]
            DependencySignal.objects.bulk_create(signals, ignore_conflicts=True)
            SurgeSignal.objects.filter(pk__in=[s.pk for s in batch]).update(processed_at=now)
            made += len(signals)


def _surge_signal(surge: SurgeSignal) -> DependencySignal:
    kpi = surge.kpi
    unit = f" {kpi.unit}" if kpi.unit else ""
    window = f" over {span(kpi.surge_window)}" if kpi.surge_window else ""
    trend = f"{surge.change * 100:+.0f}%{unit}{window}"
    return DependencySignal(
        organization_id=surge.organization_id,
        kpi_id=kpi.pk,
        kind=DependencySignal.Kind.SURGE,
        at=surge.at,
        cause=f"{kpi.name} surged: {trend} ({surge.previous:g} -> {surge.current:g})",
        value=surge.current,
        trend=trend,
        surge=surge,
    )


# --- signals -> reviews ---------------------------------------------------------------------------


@dataclass
class Window:
    """A downstream owner's review task open to grouping: its first review's time (`at`), its unanswered reviews
    by KPI, and, for a task this batch opens, what reached the owner (for the one notification it sends)."""

    task: Task
    at: datetime
    parts: dict[int, DependencyReview] = field(default_factory=dict)
    reached: list[tuple[DependencySignal, Kpi]] | None = None  # None: the task was there before this batch


def propagate(*, now: datetime, org_id: int | None) -> tuple[int, int]:
    """Every unpropagated signal reaches its KPI's direct downstream KPIs; returns (reviews opened, throttled).
    Then open review tasks follow their KPIs' owners (follow_owners)."""
    opened = throttled = 0
    while True:
        with transaction.atomic():
            pending = DependencySignal.objects.filter(propagated_at=None)
            if org_id:
                pending = pending.filter(organization_id=org_id)
            batch = list(
                pending.select_related("kpi__team", "kpi__organization", "kpi__owner__user")
                .order_by("at", "id")
                .select_for_update(skip_locked=True, of=("self",))[:BATCH_SIZE]
            )
            if not batch:
                break
            made, held = _propagate(batch, now)
            DependencySignal.objects.filter(pk__in=[s.pk for s in batch]).update(propagated_at=now)
            opened, throttled = opened + made, throttled + held
    follow_owners(now=now, org_id=org_id)
    return opened, throttled


def _propagate(batch: list[DependencySignal], now: datetime) -> tuple[int, int]:
    upstream = {s.kpi_id: s.kpi for s in batch}
    # By the upstream index alone: joining the KPIs here made PostgreSQL scan them once per batch.
    rows = list(
        Dependency.objects.filter(upstream_id__in=upstream).values_list(
            "upstream_id", "downstream_id", "lag", "organization_id"
        )
    )
    if not rows:
        return 0, 0
    # The downstream rows, in id order and before anything else: the lock that serialises every decision about
    # their reviews (NO KEY UPDATE, so rows that merely refer to these KPIs are not held up).
    kpis = {
        k.pk: k
        for k in Kpi.objects.filter(pk__in={down for _, down, _, _ in rows}, archived_at=None)
        .select_related("owner__user", "organization")
        .order_by("pk")
        .select_for_update(of=("self",), no_key=True)
    }
    edges: dict[int, list[tuple[int, timedelta]]] = defaultdict(list)
    for up, down, lag, org_id in rows:
        # Edges never cross organizations (the service refuses them); a signal never follows one that did.
        if down in kpis and kpis[down].organization_id == org_id == upstream[up].organization_id:
            edges[up].append((down, lag or DEFAULT_LAG))
    downs = sorted({down for targets in edges.values() for down, _ in targets})
    if not downs:
        return 0, 0
    # Then their owners' rows, in id order: tasks group per owner, and two batches reaching different KPIs of one
    # owner must not each open a task for the same window.
    owners = sorted({kpis[down].owner_id for down in downs})
    list(Membership.objects.filter(pk__in=owners).order_by("pk").select_for_update(no_key=True).values_list("pk"))
    first, last = batch[0].at, batch[-1].at
    windows = _windows(owners, first, last)
    # Throttling: per (upstream, downstream), the latest review an unthrottled signal of the upstream is in.
    longest = max(lag for targets in edges.values() for _, lag in targets)
    anchors: dict[tuple[int, int], DependencyReview] = {}
    for up, down, review_id, opened in (
        DependencyReviewSignal.objects.filter(
            kpi_id__in=downs, upstream_id__in=upstream, throttled=False, review__opened_at__gt=first - longest
        )
        .order_by("review__opened_at", "review_id")
        .values_list("upstream_id", "kpi_id", "review_id", "review__opened_at")
    ):
        anchors[(up, down)] = DependencyReview(pk=review_id, opened_at=opened)
    policies = policies_for(upstream.values())

    reviews, deliveries, new_windows, earlier = [], [], [], []
    reached: dict[int, list[tuple[Kpi, bool]]] = defaultdict(list)  # signal -> (downstream, throttled)
    for signal in batch:
        for down, lag in edges.get(signal.kpi_id, ()):
            kpi, pair = kpis[down], (signal.kpi_id, down)
            window = next((w for w in reversed(windows[kpi.owner_id]) if abs(signal.at - w.at) < GROUP_WINDOW), None)
            # Within the owner's window, the KPI's unanswered review takes every signal; else the throttle decides.
            review = window.parts.get(down) if window else None
            held = False
            if review is None:
                anchor = anchors.get(pair)
                if anchor is not None and signal.at < anchor.opened_at + lag:
                    review, held = anchor, True
                else:
                    review = _open(signal, kpi, policies[signal.kpi_id])
                    if window is None:
                        window = Window(task=_task(signal, kpi, review.due_at, now), at=signal.at, reached=[])
                        windows[kpi.owner_id].append(window)
                        new_windows.append(window)
                    elif review.due_at < window.task.due_at:  # the task is due with its earliest review
                        window.task.due_at = review.due_at
                        if window.reached is None:
                            earlier.append(window.task)
                    review.task = window.task
                    window.parts[down] = review
                    reviews.append(review)
            if not held and (pair not in anchors or anchors[pair].opened_at <= review.opened_at):
                anchors[pair] = review
            if window is not None and window.reached is not None and not held:
                window.reached.append((signal, kpi))
            deliveries.append(
                DependencyReviewSignal(
                    organization_id=signal.organization_id,
                    signal=signal,
                    review=review,
                    kpi_id=down,
                    upstream_id=signal.kpi_id,
                    at=signal.at,
                    throttled=held,
                )
            )
            reached[signal.pk].append((kpi, held))
    # The tasks first (a review refers to its task), then the reviews, then what reached them. No ignore_conflicts:
    # the signals are claimed, so a conflict would be a bug to hear about, and the reviews need the tasks' ids.
    Task.objects.bulk_create([w.task for w in new_windows])
    DependencyReview.objects.bulk_create(reviews)
    DependencyReviewSignal.objects.bulk_create(deliveries, ignore_conflicts=True)
    Task.objects.bulk_update(earlier, ["due_at"])
    notify_all([_announcement(w) for w in new_windows], now=now)
    _tell_upstream_episodes(batch, reached)
    return len(reviews), sum(held for targets in reached.values() for _, held in targets)


def _windows(owners: list[int], first: datetime, last: datetime) -> dict[int, list[Window]]:
    """The owners' open review tasks whose first review is within GROUP_WINDOW of this batch's signals, oldest
    first, with their unanswered reviews (two queries)."""
    windows: dict[int, list[Window]] = defaultdict(list)
    tasks = (
        Task.objects.filter(kind=Task.Kind.DEPENDENCY_REVIEW, state__in=OPEN, assignee_id__in=owners)
        .annotate(first_at=Min("reviews__opened_at"))
        .filter(first_at__gt=first - GROUP_WINDOW, first_at__lt=last + GROUP_WINDOW)
        .order_by("first_at", "id")
    )
    by_id = {}
    for task in tasks:
        by_id[task.pk] = Window(task=task, at=task.first_at)
        windows[task.assignee_id].append(by_id[task.pk])
    for review in DependencyReview.objects.filter(task_id__in=by_id, answered_at=None).order_by("opened_at", "id"):
        by_id[review.task_id].parts.setdefault(review.kpi_id, review)
    return windows


def _task(signal: DependencySignal, kpi: Kpi, due: datetime, now: datetime) -> Task:
    """The owner's review task for a new window, due with its earliest review."""
    return Task(
        organization_id=kpi.organization_id,
        kind=Task.Kind.DEPENDENCY_REVIEW,
        assignee=kpi.owner,
        kpi=kpi,  # the first KPI reached; the task lists every one (`reviews`)
        due_at=due,
        created_at=now,
        # One task per window and owner: the window's first signal and KPI name it.
        dedup_key=f"{kpi.organization_id}:{kpi.pk}:signal{signal.pk}:{Task.Kind.DEPENDENCY_REVIEW}:{kpi.owner_id}",
    )


def _open(signal: DependencySignal, kpi: Kpi, snapshot: tuple[str, Policy]) -> DependencyReview:
    """A review of one downstream KPI, due and escalating by the policy of the upstream whose signal opened it."""
    key, policy = snapshot
    due = signal.at + policy.mitigation_due
    return DependencyReview(
        organization_id=kpi.organization_id,
        kpi=kpi,
        opened_at=signal.at,
        due_at=due,
        policy_key=key,
        policy=policy.as_json(),
        next_escalation_at=due if policy.levels else None,
    )


def _announcement(window: Window) -> Announcement:
    """One notification per new task: every signal that reached the owner in this batch, per affected KPI."""
    task, org = window.task, window.task.kpi.organization
    affected = list({kpi.pk: kpi for _, kpi in window.reached}.values())
    signals = list({signal.pk: signal for signal, _ in window.reached}.values())
    lines = []
    for signal in signals:
        value = f" Value {signal.value:g}; trend {signal.trend}." if signal.value is not None else ""
        names = and_list([kpi.name for s, kpi in window.reached if s.pk == signal.pk])
        lines.append(f"- {signal.cause}.{value} Affects {names}.")
    if len(signals) == 1 and len(affected) == 1:
        subject = f"{signals[0].kpi.name} changed: does it affect {affected[0].name}?"
    else:
        sources = and_list(list(dict.fromkeys(s.kpi.name for s in signals)))
        subject = f"{sources} changed: {'does it' if len(signals) == 1 else 'do they'} affect "
        subject = f"{subject}{and_list([k.name for k in affected])}?"
    due = min(part.due_at for part in window.parts.values())
    body = (
        "\n".join(lines)
        + f'\n\nFor each KPI answer "impact" (a preventive workstream opens on it) or "no impact" with your reason, '
        f"by {when(due, org)}."
    )
    return Announcement(
        recipients=[task.assignee],
        message=Message(
            kind=Task.Kind.DEPENDENCY_REVIEW,
            subject=subject[:200],
            body=body,
            url=f"{reverse('task_inbox', args=[org.slug])}#task-{task.pk}",
        ),
        dedup_key=f"{task.organization_id}:{task.kpi_id}:signal{signals[0].pk}:review",
    )


def and_list(names: list[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _tell_upstream_episodes(batch: list[DependencySignal], reached: dict[int, list[tuple[Kpi, bool]]]) -> None:
    """The upstream's open workstream lists the downstream owners asked to review (its participants)."""
    episodes = {
        ws.kpi_id: ws
        for ws in Workstream.objects.filter(kpi_id__in={s.kpi_id for s in batch if reached[s.pk]}, resolved_at=None)
    }
    events = []
    for signal in batch:
        ws = episodes.get(signal.kpi_id)
        if ws is None or not reached[signal.pk]:
            continue
        asked = [f"{k.owner.user.name} ({k.name})" for k, held in reached[signal.pk] if not held]
        held = [k.name for k, held in reached[signal.pk] if held]
        text = f"Asked to review the impact downstream: {', '.join(asked)}" if asked else ""
        if held:
            text += f"{'; ' if text else ''}reviewed within the lag already, not asked again: {', '.join(held)}"
        events.append(
            WorkstreamEvent(
                organization_id=ws.organization_id, workstream=ws, at=signal.at, verb="reviews_requested", text=text
            )
        )
    WorkstreamEvent.objects.bulk_create(events)


# --- owner changes ------------------------------------------------------------------------------------


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
            DependencyReview.objects.filter(task__in=tasks)
            .select_related("kpi__owner__user")
            .order_by("opened_at", "id")
        ):
            parts[review.task_id].append(review)
        changed, created, moved, announcements = [], [], [], []
        for task in tasks:
            unanswered = [r for r in parts[task.pk] if r.is_open]
            going: dict[int, list[DependencyReview]] = defaultdict(list)
            for review in unanswered:
                if review.kpi.owner_id != task.assignee_id:
                    going[review.kpi.owner_id].append(review)
            if not going:
                continue
            staying = [r for r in unanswered if r.kpi.owner_id == task.assignee_id]
            previous = task.assignee_id
            if not staying and len(going) == 1 and len(unanswered) == len(parts[task.pk]):
                [reviews] = going.values()
                task.assignee, task.kpi = reviews[0].kpi.owner, reviews[0].kpi
                changed.append(task)
                announcements.append((task, reviews, previous))
                continue
            for reviews in going.values():
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
                created.append(new)
                for review in reviews:
                    review.task = new
                    moved.append(review)
                announcements.append((new, reviews, previous))
            if staying:
                task.kpi, task.due_at = staying[0].kpi, min(r.due_at for r in staying)
            else:  # what it still lists was answered
                task.state, task.done_at = Task.State.DONE, now
            changed.append(task)
        Task.objects.bulk_create(created)
        DependencyReview.objects.bulk_update(moved, ["task"])
        Task.objects.bulk_update(changed, ["assignee", "kpi", "due_at", "state", "done_at"])
        notify_all([_moved(task, reviews, previous) for task, reviews, previous in announcements], now=now)
    return sum(len(reviews) for _, reviews, _ in announcements)


def _moved(task: Task, reviews: list[DependencyReview], previous: int) -> Announcement:
    org = task.organization
    return Announcement(
        recipients=[task.assignee],
        message=Message(
            kind=task.kind,
            subject=f"You now own {and_list([r.kpi.name for r in reviews])}: {task.get_kind_display().lower()}",
            body=f"Due {when(task.due_at, org)}.",
            url=f"{reverse('task_inbox', args=[org.slug])}#task-{task.pk}",
        ),
        dedup_key=f"{task.organization_id}:{task.kpi_id}:review{reviews[0].pk}:moved:{task.pk}:{previous}",
    )


# --- escalation of unanswered reviews ---------------------------------------------------------------


def advance_reviews(*, now: datetime, org_id: int | None) -> int:
    """advance_escalations for dependency reviews: every unanswered review whose next step is due, a batch at a
    time, each step at its own time; returns how many levels were notified."""
    notified = 0
    while True:
        with transaction.atomic():
            due = DependencyReview.objects.filter(answered_at=None, next_escalation_at__lte=now)
            if org_id:
                due = due.filter(organization_id=org_id)
            batch = list(
                due.select_related("organization", "kpi__team__lead__user", "kpi__owner__user")
                .order_by("next_escalation_at", "id")
                .select_for_update(skip_locked=True, of=("self",), no_key=True)[:BATCH_SIZE]
            )
            if not batch:
                return notified
            resolve, tasks, announcements = Resolver(), [], []
            told: dict[int, list[Membership]] = {}  # each organization's admins, read once per batch
            for review in batch:
                notified += _advance(review, now, resolve, tasks, announcements)
                if review.next_escalation_at is None and review.exhausted_at is not None:
                    if review.organization_id not in told:
                        told[review.organization_id] = admins(review.organization_id)
                    announcements.append(_exhausted(review, told[review.organization_id]))
            _supersede(tasks)
            Task.objects.bulk_create(tasks, ignore_conflicts=True)
            notify_all(announcements, now=now)
            _save(batch, ["level", "escalation_pass", "renotify", "next_escalation_at", "exhausted_at", "history"])


def _save(reviews: list[DependencyReview], fields: list[str]) -> None:
    """bulk_update in one statement. Django's CASE per row and field took ~3 ms a review to build (8 s for the
    benchmark's 2,792); on PostgreSQL an UPDATE joins the batch's values as arrays instead."""
    if connection.vendor != "postgresql":
        DependencyReview.objects.bulk_update(reviews, fields)
        return
    columns = [DependencyReview._meta.get_field(name) for name in fields]
    arrays = ", ".join(["%s::bigint[]", *(f"%s::{c.db_type(connection)}[]" for c in columns)])
    names = ", ".join(c.column for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {DependencyReview._meta.db_table} AS r SET "
            f"{', '.join(f'{c.column} = v.{c.column}' for c in columns)} "
            f"FROM unnest({arrays}) AS v(id, {names}) WHERE r.id = v.id",
            [
                [r.pk for r in reviews],
                *([c.get_db_prep_save(getattr(r, c.attname), connection) for r in reviews] for c in columns),
            ],
        )


def _advance(
    review: DependencyReview, now: datetime, resolve: Resolver, tasks: list[Task], announcements: list[Announcement]
) -> int:
    """sweeps._advance for a review: runs every step due by `now`, each at its own time."""
    kpi, org, notified = review.kpi, review.organization, 0
    steps = due_steps(
        review,
        kpi,
        now,
        resolve,
        skipped=lambda step, text: _log(review, step.at, "level_skipped", text),
        exhausted=lambda at: _log(review, at, "exhausted", "Escalation exhausted: the review is still unanswered"),
        # The downstream owner answers the review: its escalation goes to someone else.
        exclude={kpi.owner.user_id: "must answer this review"},
    )
    for step, found in steps:
        key, people = step_key(step), found.people
        tasks += [
            Task(
                organization_id=review.organization_id,
                kind=Task.Kind.ESCALATION,
                assignee=person,
                kpi=kpi,
                review=review,
                level=step.level,
                escalation_pass=step.pass_,
                due_at=step.then,
                created_at=now,
                dedup_key=f"{review.organization_id}:{kpi.pk}:review{review.pk}:{Task.Kind.ESCALATION}:{key}:{person.pk}",
            )
            for person in people
        ]
        _log(review, step.at, "escalated", escalated_text(step, found))
        announcements.append(
            Announcement(
                recipients=people,
                message=Message(
                    kind=Task.Kind.ESCALATION,
                    subject=f"Escalation: the dependency review of {kpi.name} is unanswered",
                    body=(
                        f"Upstream changes reached {kpi.name} on {when(review.opened_at, org)}; its owner "
                        f"{kpi.owner.user.name} was to answer by {when(review.due_at, org)}. Get it answered, or "
                        f"answer it yourself from your task."
                    ),
                    url=kpi_url(kpi, org),
                ),
                dedup_key=f"{review.organization_id}:{kpi.pk}:review{review.pk}:{key}",
            )
        )
        notified += 1
    return notified


def _log(review: DependencyReview, at: datetime, verb: str, text: str) -> None:
    review.history = [*review.history, {"at": at.isoformat(), "verb": verb, "text": text}]


def _exhausted(review: DependencyReview, people: list[Membership]) -> Announcement:
    return Announcement(
        recipients=people,
        message=Message(
            kind="exhausted",
            subject=f"Escalation exhausted: the dependency review of {review.kpi.name}",
            body=f"Every level was notified and nobody answered whether upstream changes affect {review.kpi.name}.",
            url=kpi_url(review.kpi, review.organization),
        ),
        dedup_key=f"{review.organization_id}:{review.kpi_id}:review{review.pk}:exhausted",
    )


def _supersede(tasks: list[Task]) -> None:
    """A person escalated to again on a review keeps one open escalation task there: the newest."""
    again = {(t.review.pk, t.assignee_id) for t in tasks}
    older = Task.objects.filter(
        review_id__in={review for review, _ in again}, kind=Task.Kind.ESCALATION, state__in=OPEN
    ).values_list("pk", "review_id", "assignee_id")
    ids = [pk for pk, review, person in older if (review, person) in again]
    Task.objects.filter(pk__in=ids).update(state=Task.State.CANCELLED)


# --- answers ------------------------------------------------------------------------------------------


def causes(review: DependencyReview) -> str:
    return "; ".join(
        d.signal.cause for d in review.signals.filter(throttled=False).select_related("signal").order_by("at", "id")
    )


def open_preventive(review: DependencyReview, by: Membership, reason: str, now: datetime) -> Workstream:
    """An "impact" answer: a preventive workstream on the downstream KPI, following that KPI's own policy. When the
    KPI has an open workstream already (one per KPI), that one hears about the expected impact instead."""
    kpi, org = review.kpi, review.kpi.organization
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
                body=f"{said}\n\nFile a mitigation path (actions with owners and dates) by {when(due, org)}.",
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
