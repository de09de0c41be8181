"""Demo workstreams in every state, made by the real sweeps and services from the demo's own history.

The demo's status changes arrive already processed (the history predates the engine). Here the last 12 weeks of
them (and the current breaches, however old) are handed back to the sweeps one moment at a time, so episodes open,
escalate and recover when they would have, which gives the governance health page its weeks; the owners of the
episodes that ended filed a path, approved a day later. Then people act on the current episodes: paths filed,
approved, rejected, an action gone overdue, an episode closed by decision.

The founding story's surge comes the same way: the evaluation sweep evaluates the leads' newest week (left for it
by demo.scorecards), finds it 30% above the week before and records the surge; process_status_changes turns it into
a dependency signal and one review task for Supply Chain's owner, listing both of their KPIs that depend on leads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from functools import partial

from django.db.models import F, Min
from django.utils import timezone

from escalations.engine.authority import authority
from escalations.engine.sweeps import advance_escalations, process_status_changes
from escalations.models import MitigationAction, MitigationPath, Notification, Task, Workstream
from escalations.workstreams.services import (
    ActionDraft,
    dependency_review_answer,
    mitigation_path_file,
    mitigation_path_review,
    workstream_close,
)
from governance.models import Membership, Organization
from scorecards.evaluation.sweep import evaluate_due
from scorecards.models import Kpi, Status, StatusChange

BREACHES = {Status.AT_RISK, Status.OFF_TRACK, Status.STALE}
HISTORY = timedelta(weeks=12)  # the governance health page's default period
# What the owners of the past episodes found (the demo's history breaches these KPIs in the last weeks).
PAST_CAUSES = {
    "lead.customer_nps": "Support backlog after the firmware release: replies took four days",
    "lead.strategic_projects": "Two projects wait on the same architect; one was re-planned",
    "mkt.cost_per_lead": "Search bids went up when a competitor launched; spend moved to partner channels",
    "sales.bookings": "Two enterprise deals slipped into the next month at the customers' request",
    "sales.churn": "Price change without notice to small accounts; account managers called each one",
    "mkt.leads": "The webinar series paused over the summer",
    "sc.picking_accuracy": "New pickers in the second shift without the scanner training",
}


def seed_workstreams(org: Organization) -> None:
    now = timezone.now()
    _replay(org, since=now - HISTORY, until=now)
    evaluate_due(now=now, org_id=org.pk)  # the KPIs whose newest data awaits it: the leads, and their surge
    process_status_changes(now=now, org_id=org.pk)
    advance_escalations(now=now, org_id=org.pk)
    _people_act(org, now)
    # What reached people before today has been read (and sent); the rest waits in their notifications.
    Notification.objects.filter(organization=org, created_at__lt=now - timedelta(days=1)).update(
        read_at=F("created_at"), delivered_at=F("created_at"), next_attempt_at=None
    )


def _replay(org: Organization, *, since: datetime, until: datetime) -> None:
    """Hands the sweeps every episode under way at `since` or begun after it, each change at its own time, and runs
    the escalation sweep whenever a step falls due: episodes, tasks and notifications get the times they would
    have had. In the episodes that are over by now, people acted as _past_acts says."""
    changes, current = [], {}
    for kpi in Kpi.objects.filter(organization=org).prefetch_related("status_changes"):
        history = sorted(kpi.status_changes.all(), key=lambda c: c.changed_at)
        first = next((i for i, c in enumerate(history) if c.changed_at >= since), len(history))
        while first > 0 and history[first - 1].new in BREACHES:  # the episode began before `since`
            first -= 1
        changes += history[first:]
        starts = [c.changed_at for c in history if c.old in (Status.ON_TRACK, Status.NO_DATA)]
        if kpi.status in BREACHES and starts:
            current[kpi.pk] = starts[-1]  # its current episode is left to _people_act
    ceo = _member(org, "ceo@acme.test")
    moment = None
    while True:
        acts = _past_acts(org, current, ceo, until)
        due = Workstream.objects.filter(
            organization=org, resolved_at=None, waiting_on=None, next_escalation_at__isnull=False
        ).aggregate(at=Min("next_escalation_at"))["at"]
        steps = [c.changed_at for c in changes if c.processed_at is not None] + [due] + [at for at, _ in acts]
        moment = min((at for at in steps if at is not None and (moment is None or at > moment)), default=None)
        if moment is None or moment > until:
            return
        for at, act in acts:
            if at <= moment:
                act(moment)
        released = [c for c in changes if c.processed_at is not None and c.changed_at <= moment]
        if released:
            for c in released:
                c.processed_at = None
            StatusChange.objects.filter(pk__in=[c.pk for c in released]).update(processed_at=None)
            process_status_changes(now=moment, org_id=org.pk)
        if released or (due is not None and due <= moment):
            advance_escalations(now=moment, org_id=org.pk)


def _past_acts(
    org: Organization, current: dict[int, datetime], ceo: Membership, until: datetime
) -> list[tuple[datetime, Callable]]:
    """What people did in the episodes that are over by now (not a KPI's current one), and when: the owner files a
    path within a day or so and the CEO approves it hours later; a dependency review it caused is answered the next
    day."""
    acts = []
    open_episodes = Workstream.objects.filter(organization=org, resolved_at=None)
    for ws in open_episodes.select_related("kpi__owner__user").prefetch_related("paths__actions"):
        if ws.kpi_id in current and ws.opened_at >= current[ws.kpi_id]:
            continue
        path = next(iter(ws.paths.all()), None)  # the newest
        if path is None:
            acts.append((ws.opened_at + timedelta(hours=6 + 12 * (ws.pk % 3)), partial(_file_past_path, ws)))
        elif path.state == MitigationPath.State.SUBMITTED:
            acts.append((path.filed_at + timedelta(hours=3 + 17 * (ws.pk % 2)), partial(_approve_past_path, path, ceo)))
        else:  # approved: each action is done the afternoon before it is due
            for action in path.actions.all():
                if action.done_at is None:
                    at = datetime.combine(action.due - timedelta(days=1), time(15), tzinfo=org.tzinfo)
                    acts.append((at, partial(_finish_past_action, action)))
    open_reviews = Task.objects.filter(
        organization=org, kind=Task.Kind.DEPENDENCY_REVIEW, state__in=[Task.State.OPEN, Task.State.ACKNOWLEDGED]
    )
    for task in open_reviews.select_related("assignee").prefetch_related("reviews__signals"):
        signals = [s for review in task.reviews.all() for s in review.signals.all()]
        if signals and all(s.at < current.get(s.upstream_id, until) for s in signals):
            acts.append((task.created_at + timedelta(hours=26), partial(_answer_past_review, task)))
    return acts


def _file_past_path(ws: Workstream, moment: datetime) -> None:
    today, owner = timezone.localdate(moment, ws.organization.tzinfo), ws.kpi.owner
    mitigation_path_file(
        workstream=ws,
        by=owner,
        root_cause=PAST_CAUSES.get(ws.kpi.key, "A one-off slip, traced with the team"),
        expected_recovery=today + timedelta(days=14),
        actions=[
            ActionDraft(
                "Fix the cause with the team and confirm it in next week's data", owner, today + timedelta(days=7)
            ),
            ActionDraft(f"Check {ws.kpi.name} daily until it is back on track", owner, today + timedelta(days=14)),
        ],
        now=moment,
    )


def _reviewer(path: MitigationPath, *people: Membership) -> Membership:
    """The first of `people` who may review the path without approving their own work (four eyes)."""
    return next(m for m in people if (a := authority("path_review", by=m, path=path)) and not a.self_approved)


def _approve_past_path(path: MitigationPath, ceo: Membership, moment: datetime) -> None:
    org = path.organization
    reviewer = _reviewer(path, ceo, _member(org, "coo@acme.test"), _member(org, "cfo@acme.test"))
    mitigation_path_review(
        path=path, by=reviewer, approve=True, comment="Cause found and owned; the actions fit it.", now=moment
    )


def _finish_past_action(action: MitigationAction, moment: datetime) -> None:
    MitigationAction.objects.filter(pk=action.pk).update(done_at=moment, progress="Done; the numbers confirm it.")


def _answer_past_review(task: Task, moment: datetime) -> None:
    for review in task.open_parts:
        dependency_review_answer(
            task=task,
            by=task.assignee,
            impact=False,
            reason="Checked with the team: no effect on our numbers this time",
            review_id=review.pk,
            now=moment,
        )


def _member(org: Organization, email: str) -> Membership:
    return Membership.objects.select_related("user").get(organization=org, user__email=email)


def _people_act(org: Organization, now) -> None:
    today = timezone.localdate(now, org.tzinfo)
    episodes = {
        ws.kpi.key: ws
        for ws in Workstream.objects.filter(organization=org, resolved_at=None).select_related("kpi__owner__user")
    }
    ceo, cfo, planner = _member(org, "ceo@acme.test"), _member(org, "cfo@acme.test"), _member(org, "planner@acme.test")

    def file(key: str, cause: str, actions: list[tuple[str, Membership, int]]):
        ws = episodes.get(key)
        if ws is None:
            return None
        drafts = [ActionDraft(text, owner, today + timedelta(days=days)) for text, owner, days in actions]
        return mitigation_path_file(
            workstream=ws,
            by=ws.kpi.owner,
            root_cause=cause,
            expected_recovery=today + timedelta(days=21),
            actions=drafts,
        )

    # Approved: escalation stopped while the actions run.
    path = file(
        "fin.gross_margin",
        "Air freight to cover stockouts eats 1.8 points of margin",
        [("Renegotiate the sea-freight contract for Q1", cfo, 10), ("Stop expedites under 500 EUR", planner, 5)],
    )
    if path:
        mitigation_path_review(
            path=path, by=_reviewer(path, ceo, cfo), approve=True, comment="Agreed; review again at the month end."
        )
    # Filed and awaiting review: escalation continues until someone approves it.
    file(
        "sc.inventory_turnover",
        "The lead surge from the spring campaign was never shared with supply planning",
        [
            ("Add Marketing's lead forecast to the weekly S&OP input", planner, 7),
            ("Rebalance safety stock for the top 40 SKUs", _member(org, "vp.supply@acme.test"), 14),
        ],
    )
    # Rejected: back to the owner.
    path = file("sc.otif", "Carrier capacity", [("Talk to the carriers", planner, 14)])
    if path:
        mitigation_path_review(
            path=path,
            by=_reviewer(path, ceo, cfo),
            approve=False,
            comment="Which carriers, which lanes, by when? Add owners and dates.",
        )
    # Approved, then an action went overdue: escalation restarts from level 1.
    path = file(
        "mkt.mql_sql",
        "Lead scoring rewards webinar sign-ups that never convert",
        [("Retrain the scoring model on last year's closed deals", _member(org, "analyst.marketing@acme.test"), 3)],
    )
    if path:
        mitigation_path_review(
            path=path, by=_reviewer(path, ceo, cfo), approve=True, comment="Retraining on closed deals fits the cause."
        )
        MitigationAction.objects.filter(path=path).update(due=today - timedelta(days=2))
        advance_escalations(now=now, org_id=org.pk)
    # Closed by decision.
    if "lead.time_to_hire" in episodes:
        workstream_close(
            workstream=episodes["lead.time_to_hire"],
            by=ceo,
            resolution=Workstream.Resolution.ACCEPTED_RISK,
            reason="Hiring freeze until Q2: time to hire is expected to stay high.",
        )
