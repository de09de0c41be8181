"""One escalation step after another (SEMANTICS.md section 3): which steps are due, what they say, and the
Escalation that runs a batch's steps in memory and writes them in bulk."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

from escalations.engine.blocks import OPEN, Journal, new_task, paths_among, without_overdue
from escalations.engine.resolver import Resolved, Resolver, admins, four_eyes, target_words
from escalations.engine.timing import Policy, Position, Step, walk
from escalations.models import (
    DependencyReview,
    Task,
    Workstream,
)
from governance import formats
from governance.hours import business_hours
from governance.models import Membership
from scorecards.models import Kpi


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
    if episode.next_escalation_at is None or episode.next_escalation_at > now:
        return
    if not policy.levels:
        episode.next_escalation_at = None
        return
    position = Position(episode.level, episode.escalation_pass)
    steps = walk(policy, position, episode.next_escalation_at, hours, renotifying=episode.renotify)
    _, step = next(steps)
    while True:
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
        else:
            yield step, found
            episode.next_escalation_at = step.then
        if episode.next_escalation_at > now:
            return
        _, step = steps.send(not found.people)


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
                    f"Opened {formats.when(ws.opened_at, ws.organization.tzinfo)}; owner "
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
