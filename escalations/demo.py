"""Demo workstreams in every state, made by the real sweeps and services from the demo's own history.

The demo's status changes arrive already processed (the history predates the engine). Here the changes that
put each KPI into its current breach are handed back to the sweep, which opens the episodes at their real
times, and the escalation sweep catches up to now; then people act: paths filed, approved, rejected, an
action gone overdue, an episode closed by decision. One past episode is replayed to its recovery.

The founding story's surge comes the same way: the evaluation sweep evaluates the leads' newest week (left for it
by scorecards.demo), finds it 30% above the week before and records the surge; process_status_changes turns it into
a dependency signal and one review task for Supply Chain's owner, listing both of their KPIs that depend on leads.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from escalations.models import MitigationAction, Workstream
from escalations.services import ActionDraft, mitigation_path_file, mitigation_path_review, workstream_close
from escalations.sweeps import advance_escalations, process_status_changes
from governance.models import Membership, Organization
from scorecards.evaluation import evaluate_due
from scorecards.models import Kpi, Status, StatusChange

BREACHES = {Status.AT_RISK, Status.OFF_TRACK, Status.STALE}


def seed_workstreams(org: Organization) -> None:
    now = timezone.now()
    for kpi in Kpi.objects.filter(organization=org, status__in=BREACHES):
        streak = []  # the current episode's changes: since the KPI last left on_track
        for change in kpi.status_changes.order_by("-changed_at"):
            streak.append(change.pk)
            if change.old in (Status.ON_TRACK, Status.NO_DATA):
                break
        StatusChange.objects.filter(pk__in=streak).update(processed_at=None)
    _replay_a_recovery(org)
    evaluate_due(now=now, org_id=org.pk)  # the KPIs whose newest data awaits it: the leads, and their surge
    process_status_changes(now=now, org_id=org.pk)
    advance_escalations(now=now, org_id=org.pk)
    _people_act(org, now)


def _replay_a_recovery(org: Organization) -> None:
    """The newest past breach that ended on track, so the list has a recovered episode too."""
    recovery = (
        StatusChange.objects.filter(organization=org, new=Status.ON_TRACK, old__in=[Status.AT_RISK, Status.OFF_TRACK])
        .order_by("-changed_at")
        .first()
    )
    if recovery is None:
        return
    breach = (
        StatusChange.objects.filter(kpi=recovery.kpi, changed_at__lt=recovery.changed_at, old=Status.ON_TRACK)
        .order_by("-changed_at")
        .first()
    )
    if breach is not None:
        StatusChange.objects.filter(
            kpi=recovery.kpi, changed_at__gte=breach.changed_at, changed_at__lte=recovery.changed_at
        ).update(processed_at=None)


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
        mitigation_path_review(path=path, by=ceo, approve=True, comment="Agreed; review again at the month end.")
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
            path=path, by=ceo, approve=False, comment="Which carriers, which lanes, by when? Add owners and dates."
        )
    # Approved, then an action went overdue: escalation restarts from level 1.
    path = file(
        "mkt.mql_sql",
        "Lead scoring rewards webinar sign-ups that never convert",
        [("Retrain the scoring model on last year's closed deals", _member(org, "analyst.marketing@acme.test"), 3)],
    )
    if path:
        mitigation_path_review(path=path, by=ceo, approve=True, comment="")
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
