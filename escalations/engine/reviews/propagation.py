"""Signals become dependency reviews downstream: grouped per downstream owner within GROUP_WINDOW, throttled per
edge (its lag), one review task per owner's window, and the upstream episodes told whom they reached."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Min
from django.urls import reverse

from dependencies.models import Dependency
from escalations.engine.blocks import OPEN
from escalations.engine.resolver import policies_for
from escalations.engine.reviews.owners import follow_owners
from escalations.engine.reviews.signals import BATCH_SIZE, and_list
from escalations.engine.timing import Policy
from escalations.models import (
    DependencyReview,
    DependencyReviewSignal,
    DependencySignal,
    Task,
    Workstream,
    WorkstreamEvent,
)
from escalations.notify.fanout import Announcement, Message, notify_all
from governance import formats
from governance.models import Membership
from scorecards.models import Kpi

GROUP_WINDOW = timedelta(minutes=10)  # signals this close to a review's first one join it

DEFAULT_LAG = timedelta(hours=24)  # the throttle window of an edge without a lag


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
    kpis, edges = _lock_downstream(upstream)
    if not edges:
        return 0, 0
    owners = _lock_owners(kpis, edges)
    first, last = batch[0].at, batch[-1].at
    windows = _windows(owners, first, last)
    anchors = _anchors(edges, upstream, first)
    policies = policies_for(upstream.values())
    writes = _Writes()
    for signal in batch:
        for down, lag in edges.get(signal.kpi_id, ()):
            _reach(signal, kpis[down], lag, windows, anchors, policies[signal.kpi_id], writes, now)
    return writes.save(batch, now)


Edges = dict[int, list[tuple[int, timedelta]]]  # upstream KPI id -> (downstream KPI id, throttle window)


def _lock_downstream(upstream: dict[int, Kpi]) -> tuple[dict[int, Kpi], Edges]:
    """The downstream KPIs of the batch's upstreams, locked, and the edges to them."""
    # By the upstream index alone: joining the KPIs here made PostgreSQL scan them once per batch.
    rows = list(
        Dependency.objects.filter(upstream_id__in=upstream).values_list(
            "upstream_id", "downstream_id", "lag", "organization_id"
        )
    )
    if not rows:
        return {}, {}
    # The downstream rows, in id order and before anything else: the lock that serialises every decision about
    # their reviews (NO KEY UPDATE, so rows that merely refer to these KPIs are not held up).
    kpis = {
        k.pk: k
        for k in Kpi.objects.filter(pk__in={down for _, down, _, _ in rows}, archived_at=None)
        .select_related("owner__user", "organization")
        .order_by("pk")
        .select_for_update(of=("self",), no_key=True)
    }
    edges: Edges = defaultdict(list)
    for up, down, lag, org_id in rows:
        # Edges never cross organizations (the service refuses them); a signal never follows one that did.
        if down in kpis and kpis[down].organization_id == org_id == upstream[up].organization_id:
            edges[up].append((down, lag or DEFAULT_LAG))
    return kpis, edges


def _downstream_ids(edges: Edges) -> list[int]:
    return sorted({down for targets in edges.values() for down, _ in targets})


def _lock_owners(kpis: dict[int, Kpi], edges: Edges) -> list[int]:
    """Then their owners' rows, in id order: tasks group per owner, and two batches reaching different KPIs of one
    owner must not each open a task for the same window."""
    owners = sorted({kpis[down].owner_id for down in _downstream_ids(edges)})
    list(Membership.objects.filter(pk__in=owners).order_by("pk").select_for_update(no_key=True).values_list("pk"))
    return owners


def _anchors(edges: Edges, upstream: dict[int, Kpi], first: datetime) -> dict[tuple[int, int], DependencyReview]:
    """Throttling: per (upstream, downstream), the latest review an unthrottled signal of the upstream is in."""
    longest = max(lag for targets in edges.values() for _, lag in targets)
    anchors: dict[tuple[int, int], DependencyReview] = {}
    for up, down, review_id, opened in (
        DependencyReviewSignal.objects.filter(
            kpi_id__in=_downstream_ids(edges),
            upstream_id__in=upstream,
            throttled=False,
            review__opened_at__gt=first - longest,
        )
        .order_by("review__opened_at", "review_id")
        .values_list("upstream_id", "kpi_id", "review_id", "review__opened_at")
    ):
        anchors[(up, down)] = DependencyReview(pk=review_id, opened_at=opened)
    return anchors


@dataclass
class _Writes:
    """What a batch writes, gathered while its signals are routed, stored in bulk at the end."""

    reviews: list[DependencyReview] = field(default_factory=list)
    deliveries: list[DependencyReviewSignal] = field(default_factory=list)
    new_windows: list[Window] = field(default_factory=list)
    earlier: list[Task] = field(default_factory=list)  # tasks now due earlier, with a review they took on
    reached: dict[int, list[tuple[Kpi, bool]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # signal -> (downstream, throttled)

    def save(self, batch: list[DependencySignal], now: datetime) -> tuple[int, int]:
        # The tasks first (a review refers to its task), then the reviews, then what reached them. No
        # ignore_conflicts: the signals are claimed, so a conflict would be a bug to hear about, and the reviews need
        # the tasks' ids.
        Task.objects.bulk_create([w.task for w in self.new_windows])
        DependencyReview.objects.bulk_create(self.reviews)
        DependencyReviewSignal.objects.bulk_create(self.deliveries, ignore_conflicts=True)
        Task.objects.bulk_update(self.earlier, ["due_at"])
        notify_all([_announcement(w) for w in self.new_windows], now=now)
        _tell_upstream_episodes(batch, self.reached)
        return len(self.reviews), sum(held for targets in self.reached.values() for _, held in targets)


def _reach(
    signal: DependencySignal,
    kpi: Kpi,
    lag: timedelta,
    windows: dict[int, list[Window]],
    anchors: dict[tuple[int, int], DependencyReview],
    snapshot: tuple[str, Policy],
    writes: _Writes,
    now: datetime,
) -> None:
    """One signal reaches one downstream KPI: it joins the review of the owner's window, is throttled by the
    latest review the same upstream reached within the edge's lag, or opens a review (and a window's task)."""
    pair = (signal.kpi_id, kpi.pk)
    window = next((w for w in reversed(windows[kpi.owner_id]) if abs(signal.at - w.at) < GROUP_WINDOW), None)
    # Within the owner's window, the KPI's unanswered review takes every signal; else the throttle decides.
    review = window.parts.get(kpi.pk) if window else None
    held = False
    if review is None:
        anchor = anchors.get(pair)
        if anchor is not None and signal.at < anchor.opened_at + lag:
            review, held = anchor, True
        else:
            review = _open(signal, kpi, snapshot)
            if window is None:
                window = Window(task=_task(signal, kpi, review.due_at, now), at=signal.at, reached=[])
                windows[kpi.owner_id].append(window)
                writes.new_windows.append(window)
            elif review.due_at < window.task.due_at:  # the task is due with its earliest review
                window.task.due_at = review.due_at
                if window.reached is None:
                    writes.earlier.append(window.task)
            review.task = window.task
            window.parts[kpi.pk] = review
            writes.reviews.append(review)
    if not held and (pair not in anchors or anchors[pair].opened_at <= review.opened_at):
        anchors[pair] = review
    if window is not None and window.reached is not None and not held:
        window.reached.append((signal, kpi))
    writes.deliveries.append(
        DependencyReviewSignal(
            organization_id=signal.organization_id,
            signal=signal,
            review=review,
            kpi_id=kpi.pk,
            upstream_id=signal.kpi_id,
            at=signal.at,
            throttled=held,
        )
    )
    writes.reached[signal.pk].append((kpi, held))


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
        f"by {formats.when(due, org.tzinfo)}."
    )
    return Announcement(
        recipients=[task.assignee],
        message=Message(
            kind=Task.Kind.DEPENDENCY_REVIEW,
            subject=subject[:200],
            body=body,
            url=f"{reverse('escalations:task_inbox', args=[org.slug])}#task-{task.pk}",
        ),
        dedup_key=f"{task.organization_id}:{task.kpi_id}:signal{signals[0].pk}:review",
    )


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
