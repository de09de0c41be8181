"""The demo's executive review: one session, closed, with decisions of the common kinds made by the real services;
what it did not decide is the open agenda (a path awaiting review, off-track and stale KPIs)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from escalations.decisions import review_sessions, services
from escalations.models import ReviewSession, Workstream
from governance.models import Membership, Organization
from scorecards.models import Kpi


def _member(org: Organization, email: str) -> Membership:
    return Membership.objects.select_related("user").get(organization=org, user__email=email)


def seed_reviews(org: Organization) -> ReviewSession | None:
    kpis = {k.key: k for k in Kpi.objects.for_org(org).select_related("owner__user", "organization")}
    episodes = {ws.kpi.key: ws for ws in Workstream.objects.for_org(org).filter(resolved_at=None).select_related("kpi")}
    ceo, cfo, coo = (_member(org, f"{who}@acme.test") for who in ("ceo", "cfo", "coo"))
    today = timezone.localdate(timezone=org.tzinfo)
    started = timezone.now()
    session = review_sessions.review_session_start(
        org=org,
        by=ceo,
        title=f"Steering review {today:%d %b %Y}",
        attendees=[cfo, coo, _member(org, "admin@acme.test"), _member(org, "vp.supply@acme.test")],
    )
    air = kpis.get("fin.air_freight")
    if air is not None and all(isinstance(v, int | float) for v in air.thresholds.values()):
        services.decision_change_target(
            kpi=air,
            by=cfo,
            reason="Q4 peak: the board accepts air freight up to 5% of COGS until January, sea capacity is short.",
            target_value=air.target_value,
            target_by=air.target_by,
            # Looser by a fifth until the peak is over.
            thresholds={level: round(float(value) * 1.2) for level, value in air.thresholds.items()},
            expected_by=today + timedelta(days=21),
            session=session,
        )
    if "sc.supplier_lead_time" in episodes:
        services.decision_accept_risk(
            workstream=episodes["sc.supplier_lead_time"],
            by=ceo,
            reason="The supplier portal migrates this month; planners use the weekly e-mail until the feed is back.",
            until=today + timedelta(days=9),
            session=session,
        )
    if "lead.strategic_projects" in kpis:
        services.decision_request_transfer(
            kpi=kpis["lead.strategic_projects"],
            by=ceo,
            to_owner=coo,
            reason="Escalation ran out twice: the portfolio office moves under the COO, who runs the delivery reviews.",
            expected_by=today + timedelta(days=30),
            session=session,
        )
    if "fin.gross_margin" in episodes:
        services.decision_assign_action(
            workstream=episodes["fin.gross_margin"],
            by=cfo,
            reason="Follow the freight effect week by week until the sea contract lands.",
            description="Weekly margin bridge (freight, mix, price) to the CFO",
            owner=_member(org, "controller@acme.test"),
            due=today + timedelta(days=7),
            session=session,
        )
    if "mkt.mql_sql" in episodes:
        services.decision_assign_action(
            workstream=episodes["mkt.mql_sql"],
            by=coo,
            reason="The scoring retrain slipped; sales ops must agree the new rubric before it ships.",
            description="Review the lead-scoring rubric with sales ops",
            owner=_member(org, "vp.sales@acme.test"),
            due=today + timedelta(days=3),
            expected_by=today + timedelta(days=14),
            session=session,
        )
    review_sessions.review_session_close(
        session=session,
        by=ceo,
        summary="Freight and supply are the quarter's risk; the COO takes over the portfolio office. "
        "Next review in two weeks.",
    )
    # The review began an hour and a quarter ago; its decisions came at its end, after the paths they act on were
    # filed (demo.workstreams files them at seed time), so every timeline stays in order.
    ReviewSession.objects.filter(pk=session.pk).update(started_at=started - timedelta(minutes=75))
    return session
