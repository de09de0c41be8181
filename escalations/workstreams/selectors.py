"""Reads shared by the workstream pages, the inbox and the API; every one is scoped to an organization."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    Case,
    Count,
    F,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce

from escalations.engine import timing
from escalations.engine.blocks import paths_among
from escalations.engine.manual_values import with_manual_values
from escalations.engine.resolver import Resolver, and_names, four_eyes
from escalations.engine.timing import BusinessHours, Policy, Position
from escalations.engine.transfers import with_transfers
from escalations.models import (
    DependencyReview,
    DependencyReviewSignal,
    MitigationPath,
    Notification,
    Task,
    Workstream,
)
from governance import formats
from governance.hours import business_hours
from governance.models import Membership, Organization
from scorecards.models import Kpi, Status

OPEN_STATES = [Task.State.OPEN, Task.State.ACKNOWLEDGED]


def workstreams(*, org: Organization) -> QuerySet[Workstream]:
    # The organization (business hours) and the KPI's team lead: what_next reads them.
    return Workstream.objects.for_org(org).select_related(
        "organization", "kpi__owner__user", "kpi__team__lead__user", "waiting_on__kpi"
    )


def workstream_list(*, org: Organization, state: str = "open", kind: str = "") -> QuerySet[Workstream]:
    """Open episodes first, the most severe and then the oldest on top; resolved ones after, newest first."""
    severity = Case(
        *(When(severity=s, then=Value(i)) for i, s in enumerate([Status.OFF_TRACK, Status.AT_RISK, Status.STALE])),
        default=Value(9),
        output_field=IntegerField(),
    )
    latest = MitigationPath.objects.filter(workstream=OuterRef("pk")).order_by("-filed_at", "-id")
    qs = workstreams(org=org).annotate(severity_rank=severity, path_state=Subquery(latest.values("state")[:1]))
    if state == "open":
        qs = qs.filter(resolved_at=None)
    elif state == "resolved":
        qs = qs.exclude(resolved_at=None)
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by(F("resolved_at").desc(nulls_first=True), "severity_rank", "opened_at", "id")


def path_history(workstream: Workstream) -> QuerySet[MitigationPath]:
    """Every path filed in the episode, newest first, with its actions and their owners."""
    return workstream.paths.select_related("filed_by", "reviewed_by").prefetch_related("actions__owner__user")


def latest_path(workstream: Workstream) -> MitigationPath | None:
    return workstream.paths.select_related("filed_by", "reviewed_by").prefetch_related("actions__owner__user").first()


def escalation_state(workstream: Workstream, *, skipped: str = "", told: str = "") -> str:
    """Where the escalation stands, in words ("Second round, level 2 of 2"); `skipped` is the timeline's reason
    when the level reached told nobody (`level_skipped`), `told` who it told and when (`level_told`)."""
    levels = len(Policy.from_json(workstream.policy).levels) if workstream.policy else 0
    if not workstream.is_open:
        return "Resolved"
    if workstream.exhausted_at:
        return "Escalation exhausted: the organization's admins were told"
    if not levels:
        return "No escalation policy applies: only the owner's task runs"
    if workstream.next_escalation_at is None:
        return "Escalation stopped: the mitigation path is approved"
    if workstream.waiting_on_id is not None:
        upstream = workstream.waiting_on.kpi.name
        return f"Waiting on upstream: {upstream} has an open episode; escalation starts when it resolves"
    if not workstream.level:
        return "Not escalated yet: the owner's mitigation task runs"
    if skipped:
        return skipped
    step = round_words(workstream.level, workstream.escalation_pass, levels).capitalize()
    return f"{step}: {told}" if told else step


def level_told(workstream: Workstream) -> str:
    """Who the level the episode stands at told, and when: "Claire Chen and Omar Okafor told on Thu 3 Dec"."""
    tasks = list(
        workstream.tasks.filter(
            kind=Task.Kind.ESCALATION, level=workstream.level, escalation_pass=workstream.escalation_pass
        )
        .select_related("assignee__user")
        .order_by("created_at", "id")
    )
    if not tasks:
        return ""
    names = list(dict.fromkeys(t.assignee.user.name for t in tasks))
    on = formats.day(tasks[0].created_at, workstream.organization.tzinfo, year=False, weekday=True)
    return f"{and_names(names)} told on {on}"


def level_skipped(workstream: Workstream) -> str:
    """Why the level the episode stands at told nobody (four eyes, or nobody active there), as the timeline says
    it; empty when someone at that level was told."""
    if not workstream.level:
        return ""
    told = workstream.tasks.filter(
        kind=Task.Kind.ESCALATION, level=workstream.level, escalation_pass=workstream.escalation_pass
    )
    if told.exists():
        return ""
    skip = workstream.events.filter(verb="level_skipped").order_by("-at", "-id").first()
    return skip.text if skip else ""


@dataclass(frozen=True)
class NextMove:
    """The one thing that must happen next in an episode: who, what, and by when (`due`, None when nothing is
    due), for the head of the workstream page."""

    who: str
    what: str
    due: datetime | None = None


def next_move(ws: Workstream, path: MitigationPath | None, tasks: list[Task]) -> NextMove | None:
    """From what the page has read (the latest path with its actions, the episode's tasks): the owner's filing,
    the reviewers' decision, the most overdue action, or the wait for recovery. None once resolved."""
    if not ws.is_open:
        return None
    owner = ws.kpi.owner.user.name
    filing = [t.due_at for t in tasks if t.kind == Task.Kind.MITIGATION]
    if path is None or path.state == MitigationPath.State.REJECTED:
        what = "file the mitigation path" if path is None else "file a revised path: the last one was rejected"
        return NextMove(owner, what, max(filing, default=None))
    if path.state == MitigationPath.State.SUBMITTED:
        deciding = [t for t in tasks if t.kind == Task.Kind.ESCALATION and t.is_open]
        names = list(dict.fromkeys(t.assignee.user.name for t in deciding))
        who = and_names(names) if names else "An executive"  # not escalated yet: any executive may decide
        return NextMove(
            who, f"approve or reject {path.filed_by.name}'s path", min((t.due_at for t in deciding), default=None)
        )
    tz = ws.organization.tzinfo
    pending = sorted((a for a in path.actions.all() if not a.done_at), key=lambda a: (a.due, a.pk))
    if not pending:
        return NextMove(
            owner, "watch the recovery: every action is done; the episode resolves when the KPI is back on track"
        )
    first = pending[0]
    return NextMove(
        first.owner.user.name, f"finish “{first.description}”", formats.midnight(first.due + timedelta(days=1), tz)
    )


def open_tasks(*, membership: Membership) -> QuerySet[Task]:
    """What waits for me: open and acknowledged tasks, the overdue ones first."""
    return (
        Task.objects.for_org(membership.organization)
        .filter(assignee=membership, state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED])
        .select_related("kpi", "workstream")
        .order_by("due_at", "id")
    )


# What a task's review_parts show: every KPI a review task lists (or the one an escalation task escalates), with
# the signals that reached it, their upstream KPIs, and who answered.
ESCALATED_REVIEW = ["review__signals__signal", "review__signals__upstream"]


LISTED_REVIEWS = ["reviews__kpi", "reviews__answered_by", "reviews__signals__signal", "reviews__signals__upstream"]


REVIEW_PARTS = ESCALATED_REVIEW + LISTED_REVIEWS


def inbox(*, membership: Membership) -> list[Task]:
    """open_tasks with what the inbox acts on: the overdue action, the path that awaits review, the reviews, and
    what happens next in each task's episode."""
    tasks = with_transfers(_with_listed_reviews(list(_as_inbox_shows(open_tasks(membership=membership)))))
    return with_next(with_manual_values(tasks), membership.organization)


@dataclass
class Decision:
    """One row of the executive's decision queue: a KPI that waits for me, with my open tasks on it (the one the row
    acts on first), what is asked of me in words, and when it was due. A review task that lists several KPIs is a
    row of its own."""

    kpi: Kpi
    tasks: list[Task]
    asks: list[str]
    due_at: datetime

    @property
    def task(self) -> Task:
        return self.tasks[0]

    @property
    def key(self) -> str:
        return f"t{self.task.pk}" if _shared_review(self.task) else f"k{self.kpi.pk}"


# Which of my tasks on one KPI the row acts on first: what only I can do, then the decisions asked of me.
_LEAD = {
    Task.Kind.MITIGATION: 0,
    Task.Kind.ACTION: 1,
    Task.Kind.DATA_FRESHNESS: 2,
    Task.Kind.DEPENDENCY_REVIEW: 3,
    Task.Kind.ESCALATION: 4,
}


def decision_queue(*, membership: Membership) -> list[Decision]:
    """The inbox as decisions: one row per KPI that waits for me (inbox's tasks grouped), the most overdue first."""
    return _decisions(inbox(membership=membership))


def decision_of(*, membership: Membership, task_id: int) -> Decision | None:
    """The row of the task just acted on in place, whatever its state now, with my other open tasks on its KPI."""
    task = inbox_task(membership=membership, task_id=task_id)
    if task is None:
        return None
    others = [] if _shared_review(task) else [t for t in inbox(membership=membership) if t.kpi_id == task.kpi_id]
    rows = _decisions([task, *(t for t in others if t.pk != task.pk and not _shared_review(t))])
    return next((row for row in rows if task in row.tasks), None)


def _shared_review(task: Task) -> bool:
    return task.kind == Task.Kind.DEPENDENCY_REVIEW and len(task.review_parts) > 1


def _decisions(tasks: list[Task]) -> list[Decision]:
    groups: dict[str, list[Task]] = {}
    for task in tasks:
        groups.setdefault(f"t{task.pk}" if _shared_review(task) else f"k{task.kpi_id}", []).append(task)
    rows = []
    for group in groups.values():
        group.sort(key=lambda t: (not t.is_open, _LEAD.get(t.kind, len(_LEAD)), t.due_at, t.pk))
        asks = list(dict.fromkeys(ask(t) for t in group))
        rows.append(Decision(group[0].kpi, group, asks, min(_due(t) for t in group)))
    return sorted(rows, key=lambda row: (row.due_at, row.task.pk))


def _due(task: Task) -> datetime:
    """When what is asked was due: an escalation's is its owner's (the review's answer, the path's filing), not the
    time the next level hears of it."""
    if task.kind == Task.Kind.ESCALATION and task.review_id:
        return task.review.due_at
    if task.kind == Task.Kind.ESCALATION and not task.waiting_path_id and task.filing_due_at:
        return task.filing_due_at
    return task.due_at


def ask(task: Task) -> str:
    """What the task asks of its assignee, in plain words."""
    owner = task.kpi.owner.user.name
    if not task.is_open:  # just decided in place: the row's notice says what happened
        return "Nothing more is asked of you here."
    if task.kind == Task.Kind.MITIGATION:
        return "File your mitigation path: the root cause, actions with owners and dates, and when it recovers."
    if task.kind == Task.Kind.ACTION:
        return f"Finish your action: {task.action.description}" if task.action_id else "Finish your overdue action."
    if task.kind == Task.Kind.DATA_FRESHNESS:
        return "Restore the data feed: no fresh value has arrived."
    if task.kind == Task.Kind.DEPENDENCY_REVIEW:
        n = len(task.review_parts)
        which = f"{n} of your KPIs" if n > 1 else "this KPI"
        return f"Say whether an upstream change affects {which}."
    if task.kind == Task.Kind.OWNERSHIP_TRANSFER:
        transfer = getattr(task, "transfer", None)
        leaver = transfer.from_owner.user.name if transfer else "Its owner"
        return f"{leaver} has left: accept ownership of this KPI, or decline it with a reason."
    if task.kind == Task.Kind.MANUAL_ENTRY:
        return "Enter the value of the period that has ended: it counts once someone else confirms it."
    if task.kind == Task.Kind.MANUAL_APPROVAL:
        value = getattr(task, "manual_value", None)
        who = value.entered_by.name if value else "An updater"
        return f"{who} entered a value for this KPI: confirm it, or reject it with a reason."
    if task.kind != Task.Kind.ESCALATION:  # a kind this queue has no words for yet
        return f"{task.get_kind_display()}."
    if task.review_id:
        return f"{owner} has not answered the dependency review of this KPI: answer it here or push for it."
    if task.waiting_path_id:
        return f"Approve or reject {owner}'s mitigation path."
    if task.path_state == MitigationPath.State.REJECTED:
        return f"{owner} has filed no new path since the last one was rejected."
    if task.path_state == MitigationPath.State.APPROVED:
        return f"Actions of {owner}'s approved path are overdue."
    return f"{owner} has filed no mitigation path yet."


def inbox_task(*, membership: Membership, task_id: int) -> Task | None:
    """One of the member's tasks as the inbox shows it, whatever its state (just answered in place, say)."""
    mine = Task.objects.for_org(membership.organization).filter(assignee=membership, pk=task_id)
    tasks = with_transfers(_with_listed_reviews(list(_as_inbox_shows(mine.select_related("kpi", "workstream")))))
    tasks = with_manual_values(tasks)
    return next(iter(with_next(tasks, membership.organization)), None)


def _as_inbox_shows(tasks: QuerySet[Task]) -> QuerySet[Task]:
    waiting = MitigationPath.objects.filter(workstream=OuterRef("workstream"), state=MitigationPath.State.SUBMITTED)
    latest = MitigationPath.objects.filter(workstream=OuterRef("workstream")).order_by("-filed_at", "-id")
    filing_due = Task.objects.filter(workstream=OuterRef("workstream"), kind=Task.Kind.MITIGATION).order_by("due_at")
    return (
        tasks.select_related("action", "review__kpi", "kpi__owner__user")
        .prefetch_related(*ESCALATED_REVIEW)
        .annotate(
            waiting_path_id=Subquery(waiting.values("pk")[:1]),
            path_state=Subquery(latest.values("state")[:1]),
            filing_due_at=Subquery(filing_due.values("due_at")[:1]),
        )
    )


def _with_listed_reviews(tasks: list[Task]) -> list[Task]:
    # Only review tasks list reviews: an inbox without one costs no query for them.
    prefetch_related_objects([t for t in tasks if t.kind == Task.Kind.DEPENDENCY_REVIEW], *LISTED_REVIEWS)
    return tasks


def inbox_counts(*, membership: Membership) -> dict[str, int]:
    """Unread in-app notifications and open tasks, for the navigation, in one query."""

    def count(qs: QuerySet, by: str) -> Coalesce:
        return Coalesce(Subquery(qs.order_by().values(by).annotate(n=Count("pk")).values("n")[:1]), 0)

    unread = Notification.objects.filter(recipient=OuterRef("pk"), channel=Notification.Channel.IN_APP, read_at=None)
    tasks = Task.objects.filter(assignee=OuterRef("pk"), state__in=OPEN_STATES)
    row = (
        Membership.objects.filter(pk=membership.pk)
        .values(n_unread=count(unread, "recipient"), n_tasks=count(tasks, "assignee"))
        .first()
    )
    return {"unread": row["n_unread"], "tasks": row["n_tasks"]} if row else {"unread": 0, "tasks": 0}


def upstream_causes(*, org: Organization, kpi: Kpi, limit: int = 20) -> list[DependencyReviewSignal]:
    """What reached `kpi` from its upstream KPIs, newest first, for the KPI page: each signal's upstream KPI, cause,
    value and trend (`.signal`), whether it was throttled, and the review it is listed in with its answer."""
    return list(
        DependencyReviewSignal.objects.for_org(org)
        .filter(kpi=kpi)
        .select_related("signal", "upstream", "review__answered_by", "review__workstream")
        .order_by("-at", "-id")[:limit]
    )


def dependency_reviews(*, org: Organization, kpi: Kpi | None = None, state: str = "open") -> QuerySet[DependencyReview]:
    """Reviews, the open ones soonest due first (state "open"), or every one newest first ("all"), each with its
    signals and their upstream KPIs, and the open tasks' assignees."""
    qs = (
        DependencyReview.objects.for_org(org)
        .select_related("kpi__owner__user", "kpi__team", "answered_by", "workstream")
        .prefetch_related("signals__signal", "signals__upstream")
    )
    if kpi is not None:
        qs = qs.filter(kpi=kpi)
    if state == "open":
        return qs.filter(answered_at=None).order_by("due_at", "id")
    return qs.order_by("-opened_at", "-id")


def review_participants(*, workstream: Workstream) -> list[Membership]:
    """The downstream owners asked to review signals of this upstream episode (the upstream's participants)."""
    signals = DependencyReviewSignal.objects.filter(
        organization_id=workstream.organization_id,
        upstream_id=workstream.kpi_id,
        throttled=False,
        at__gte=workstream.opened_at,
    )
    if workstream.resolved_at is not None:
        signals = signals.filter(at__lte=workstream.resolved_at)
    return list(
        Membership.objects.filter(tasks__kind=Task.Kind.DEPENDENCY_REVIEW, tasks__reviews__in=signals.values("review"))
        .select_related("user")
        .distinct()
        .order_by("user__name", "pk")
    )


def review_state(review: DependencyReview) -> str:
    """Where a review stands, in words."""
    levels = len(Policy.from_json(review.policy).levels) if review.policy else 0
    if review.answer == DependencyReview.Answer.IMPACT:
        return "Answered: impact, a workstream is open for it"
    if review.answer:
        return f"Answered: no impact ({review.answer_reason})"
    if review.exhausted_at:
        return "Unanswered, escalation exhausted: the organization's admins were told"
    if not levels:
        return "Unanswered: no escalation policy applies"
    if not review.level:
        return "Unanswered: the owner's review task runs"
    return f"Unanswered: escalated to level {review.level} of {levels}, pass {review.escalation_pass}"


@dataclass(frozen=True)
class Upcoming:
    """One step ahead: `kind` is "escalation" (a level is notified), "reminder" (the acknowledged level again) or
    "exhaustion" (escalation runs out and the admins are told); `who` are the people it reaches."""

    kind: str
    at: datetime
    who: list[str]
    level: int = 0
    pass_: int = 0  # shown when the policy repeats


@dataclass(frozen=True)
class WhatNext:
    """What happens next in an episode: its next escalation step, and separately the reminder an acknowledgement
    set. `text` says both in the organization's time zone; an exhausted, stopped or resolved episode has none."""

    step: Upcoming | None
    reminder: Upcoming | None
    text: str


NOTHING = WhatNext(None, None, "")


def _names(people: list[Membership]) -> list[str]:
    return [m.user.name for m in people]


def _words(upcoming: Upcoming, org: Organization) -> str:
    who = and_names(upcoming.who) if upcoming.who else "nobody"
    if upcoming.kind == "exhaustion":
        return f"escalation runs out at {formats.when(upcoming.at, org.tzinfo)}; the admins are told"
    which = f"level {upcoming.level}" + (f", pass {upcoming.pass_}" if upcoming.pass_ > 1 else "")
    return f"{which} ({who}) at {formats.when(upcoming.at, org.tzinfo)}"


def what_next_of(episodes: list[Workstream]) -> dict[int, WhatNext]:
    """`what_next` of many workstreams (organization, KPI owner and team lead loaded) in a constant number of
    queries, none when no episode is escalating: their paths' filers at once, each named group once."""
    live = [ws for ws in episodes if _escalating(ws)]
    upcoming = dict.fromkeys((ws.pk for ws in episodes), NOTHING)
    if live:
        _, filers = paths_among(live)
        resolve = Resolver()
        upcoming |= {ws.pk: _what_next(ws, resolve, four_eyes(ws.kpi, filers.get(ws.pk, ()))) for ws in live}
    return upcoming


def what_next(workstream: Workstream) -> WhatNext:
    return what_next_of([workstream])[workstream.pk]


def with_next(tasks: list[Task], org: Organization) -> list[Task]:
    """Sets `task.next` (a WhatNext) on each task (read with its workstream), in a constant number of queries, none
    when no task's episode escalates: the inbox and My work say what happens next in a task's episode exactly as the
    workstream pages do."""
    live = {t.workstream_id for t in tasks if t.workstream_id and _escalating(t.workstream)}
    upcoming = what_next_of(list(workstreams(org=org).filter(pk__in=live))) if live else {}
    for task in tasks:
        task.next = upcoming.get(task.workstream_id, NOTHING)
    return tasks


def _escalating(ws: Workstream) -> bool:
    return (
        ws.is_open
        and not ws.exhausted_at
        and ws.next_escalation_at is not None
        and ws.waiting_on_id is None
        and bool(ws.policy.get("levels"))
    )


def _what_next(ws: Workstream, resolve: Resolver, exclude: dict[int, str]) -> WhatNext:
    policy, hours, org, due = (
        Policy.from_json(ws.policy),
        business_hours(ws.organization),
        ws.organization,
        ws.next_escalation_at,
    )
    position, reminder, tz = Position(ws.level, ws.escalation_pass), None, org.tzinfo
    if ws.renotify:
        again = timing.renotify(policy, position, due, hours)
        reminder = Upcoming("reminder", again.at, _names(resolve.step(policy, again.level, ws.kpi, exclude).people))
        due = again.then
        position = Position(again.level, again.pass_)
    step = _next_level(policy, position, due, hours, ws.kpi, resolve, exclude)
    if reminder is not None:
        text = (
            f"Reminder to {and_names(reminder.who) if reminder.who else 'nobody'} at {formats.when(reminder.at, tz)}; "
        )
        text += (
            f"next level not before {formats.when(step.at, org.tzinfo)}"
            if step.kind == "escalation"
            else _words(step, org)
        )
    else:
        text = "Next: " + _words(step, org)
    return WhatNext(step, reminder, text)


def _next_level(
    policy: Policy,
    position: Position,
    due: datetime,
    hours: BusinessHours,
    kpi: Kpi,
    resolve: Resolver,
    exclude: dict[int, str],
) -> Upcoming:
    """The first step after `position` that reaches someone (empty levels are skipped at once, as the sweep does),
    or the exhaustion."""
    while True:
        step = timing.next_step(policy, position, due, hours)
        if step.exhausted:
            return Upcoming("exhaustion", step.at, [])
        people = resolve.step(policy, step.level, kpi, exclude).people
        if people:
            return Upcoming("escalation", step.at, _names(people), step.level, step.pass_)
        position, due = Position(step.level, step.pass_), step.at


_ROUNDS = ["first", "second", "third", "fourth", "fifth"]


def round_words(level: int, pass_: int, levels: int = 0) -> str:
    """An escalation step as people say it: "second round, level 2 of 2" (a pass is a round of the policy)."""
    which = _ROUNDS[pass_ - 1] if 0 < pass_ <= len(_ROUNDS) else f"round {pass_}"
    of = f" of {levels}" if levels else ""
    return f"{which} round, level {level}{of}"
