"""Each kind of decision: its effect through the service that owns it, the Decision row with its reason, the audit
event, the timeline; who may decide; what happened next (outcomes); the decision log pages."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from escalations.decisions import review_sessions, selectors, services
from escalations.models import (
    Decision,
    EscalationLevel,
    EscalationPolicy,
    MitigationAction,
    MitigationPath,
    Notification,
    ReviewSession,
    Task,
    Workstream,
    WorkstreamEvent,
)
from escalations.workstreams.services import ActionDraft, mitigation_path_file, mitigation_path_review
from governance.models import AuditEvent
from governance.services.teams import team_update
from scorecards.models import Kpi, OwnershipTransfer, StatusChange
from tests.conftest import Tenant
from tests.escalations.engine.test_engine import change, sweep

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


@pytest.fixture
def escalated(tenant: Tenant) -> Workstream:
    """The tenant's KPI off track since T0 under the worked example's policy (team lead after 2d, executives a day
    later), escalated to level 1 by the sweeps; now is T0 + 2d + 1h. The team is led by the member, not by the KPI's
    owner (the lead), who is never its own escalation (four eyes)."""
    team_update(team=tenant.team, actor=tenant.admin.user, lead=tenant.member)
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="standard", name="Standard", mitigation_due=2 * DAY, ack_timeout=4 * HOUR
    )
    EscalationLevel.objects.create(organization=tenant.org, policy=policy, position=1, targets=["team_lead"], wait=DAY)
    EscalationLevel.objects.create(
        organization=tenant.org, policy=policy, position=2, targets=["role:executive"], wait=2 * DAY
    )
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="standard", status="off_track", status_since=T0)
    tenant.kpi.refresh_from_db()
    change(tenant.kpi, T0)
    sweep(T0)
    sweep(T0 + 2 * DAY + HOUR)
    ws = Workstream.objects.get(kpi=tenant.kpi)
    assert ws.level == 1 and ws.tasks.filter(kind=Task.Kind.ESCALATION, state=Task.State.OPEN).exists()
    return ws


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def file_path(tenant: Tenant, ws: Workstream, today: date) -> MitigationPath:
    return mitigation_path_file(
        workstream=ws,
        by=tenant.lead,
        root_cause="Campaign paused",
        expected_recovery=today + 10 * DAY,
        actions=[ActionDraft("Restart the campaign", tenant.member, today + 3 * DAY)],
    )


def audited(tenant: Tenant, verb: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(organization=tenant.org, verb=verb))


# --- approve and reject a path ------------------------------------------------------------------------


def test_approving_a_path_stops_escalation_and_records_the_decision_with_its_follow_up(tenant, escalated):
    with at(T0 + 2 * DAY + 2 * HOUR):
        path = file_path(tenant, escalated, date(2026, 11, 4))
        decision = services.decision_review_path(
            path=path, by=tenant.executive, approve=True, reason="Credible plan, owners named."
        )
    path.refresh_from_db()
    escalated.refresh_from_db()
    assert path.state == MitigationPath.State.APPROVED and path.review_comment == "Credible plan, owners named."
    assert escalated.next_escalation_at is None
    assert (decision.kind, decision.kpi, decision.workstream, decision.path) == (
        "path_approved",
        tenant.kpi,
        escalated,
        path,
    )
    assert decision.expected_by == path.expected_recovery  # the path's own date is the follow-up
    assert decision.kpi_status == "off_track" and decision.decided_by == tenant.executive.user
    assert [e.after["reason"] for e in audited(tenant, "decision.path_approved")] == ["Credible plan, owners named."]
    assert audited(tenant, "mitigation_path.approved")  # the path review's own audit
    # One line on the timeline for the review and its decision.
    assert [
        e.verb for e in WorkstreamEvent.objects.filter(workstream=escalated, verb__in=["decision", "path_approved"])
    ] == ["path_approved"]


def test_rejecting_a_path_sends_it_back_to_the_owner(tenant, escalated):
    with at(T0 + 2 * DAY + 2 * HOUR):
        path = file_path(tenant, escalated, date(2026, 11, 4))
        decision = services.decision_review_path(
            path=path, by=tenant.executive, approve=False, reason="No dates on the second action."
        )
    assert decision.kind == "path_rejected" and decision.expected_by is None
    assert MitigationPath.objects.get(pk=path.pk).state == MitigationPath.State.REJECTED
    assert Task.objects.filter(workstream=escalated, kind=Task.Kind.MITIGATION, state=Task.State.OPEN).exists()
    assert audited(tenant, "decision.path_rejected") and audited(tenant, "mitigation_path.rejected")


def test_an_admin_reviews_a_path_only_where_the_episode_escalated_to_them(tenant, escalated):
    """The path review's own rule (executives, or those escalated to) holds for admins too: nothing is written."""
    with at(T0 + 2 * DAY + 2 * HOUR):
        path = file_path(tenant, escalated, date(2026, 11, 4))
        with pytest.raises(PermissionDenied):
            services.decision_review_path(path=path, by=tenant.admin, approve=True, reason="Fine.")
    assert not Decision.objects.exists()
    assert MitigationPath.objects.get(pk=path.pk).state == MitigationPath.State.SUBMITTED


# --- accept the risk until a date ------------------------------------------------------------------------


def test_accepting_the_risk_pauses_escalation_until_the_day_then_it_restarts_at_level_1(tenant, escalated):
    tz = tenant.org.tzinfo
    until = date(2026, 11, 12)
    resumes = datetime.combine(until, time(), tz)  # 11 Nov 23:00 UTC in Berlin
    with at(T0 + 2 * DAY + 2 * HOUR):
        decision = services.decision_accept_risk(
            workstream=escalated, by=tenant.executive, reason="Known seasonal dip.", until=until
        )
    escalated.refresh_from_db()
    assert (escalated.level, escalated.escalation_pass, escalated.next_escalation_at) == (0, 0, resumes)
    # The decision answered the open escalation task.
    assert not Task.objects.filter(workstream=escalated, kind=Task.Kind.ESCALATION, state=Task.State.OPEN).exists()
    assert decision.expected_by == until and decision.payload["escalation_resumes_at"] == resumes.isoformat()
    assert audited(tenant, "decision.risk_accepted")
    assert WorkstreamEvent.objects.filter(workstream=escalated, verb="risk_accepted").exists()
    assert Notification.objects.filter(recipient=tenant.lead, kind="decision").exists()  # the owner hears of it

    # The level-2 step that was due at T0+3d does not happen while the risk is accepted.
    escalation_tasks = Task.objects.filter(workstream=escalated, kind=Task.Kind.ESCALATION)
    before = escalation_tasks.count()
    sweep(T0 + 5 * DAY)
    assert escalation_tasks.count() == before
    escalated.refresh_from_db()
    assert escalated.level == 0
    # On the day, escalation starts again at level 1 (the team lead), as the sweep reads next_escalation_at.
    sweep(resumes + HOUR)
    escalated.refresh_from_db()
    assert escalated.level == 1
    again = escalation_tasks.filter(state=Task.State.OPEN).get()
    assert again.assignee == tenant.member and again.level == 1


def test_a_risk_is_accepted_for_a_day_after_today_and_a_year_at_most(tenant, escalated):
    with at(T0 + 2 * DAY + 2 * HOUR):
        for until in (date(2026, 11, 4), date(2026, 11, 1), date(2027, 12, 1)):
            with pytest.raises(ValidationError) as error:
                services.decision_accept_risk(workstream=escalated, by=tenant.executive, reason="x", until=until)
            assert "until" in error.value.message_dict
    assert not Decision.objects.exists()


def test_an_overdue_action_of_an_approved_path_restarts_escalation_despite_an_accepted_risk(tenant, escalated):
    """A new fact (a missed commitment) outweighs an old acceptance: the existing overdue rule applies."""
    with at(T0 + 2 * DAY + 2 * HOUR):
        path = file_path(tenant, escalated, date(2026, 11, 4))
        mitigation_path_review(path=path, by=tenant.executive, approve=True, comment="Credible plan.")
        services.decision_accept_risk(
            workstream=escalated, by=tenant.executive, reason="Accepted.", until=date(2026, 11, 20)
        )
    sweep(datetime(2026, 11, 8, 8, 0, tzinfo=UTC))  # the action was due on 7 Nov
    escalated.refresh_from_db()
    assert MitigationAction.objects.get(path=path).overdue_at is not None
    assert escalated.level == 1  # restarted from level 1 at once


# --- change the target --------------------------------------------------------------------------------------


def test_changing_the_target_updates_the_kpi_through_its_audited_service_and_asks_for_an_evaluation(tenant):
    kpi = tenant.kpi
    decision = services.decision_change_target(
        kpi=kpi,
        by=tenant.executive,
        reason="Board lowered the plan for Q4.",
        target_value=1000.0,
        target_by=None,
        thresholds={"warning": 900, "critical": 700},
        expected_by=date(2026, 12, 31),
    )
    kpi.refresh_from_db()
    assert (kpi.target_value, kpi.thresholds, kpi.needs_evaluation) == (
        1000.0,
        {"warning": 900, "critical": 700},
        True,
    )
    updated = audited(tenant, "kpi.updated")
    assert (
        len(updated) == 1 and updated[0].before["target_value"] == 1200.0 and updated[0].after["target_value"] == 1000.0
    )
    assert decision.payload["before"]["thresholds"] == {"warning": 1000, "critical": 800}
    assert decision.payload["after"]["thresholds"] == {"warning": 900, "critical": 700}
    assert decision.workstream is None and audited(tenant, "decision.target_changed")


def test_a_target_change_is_checked_like_the_kpi_settings(tenant):
    with pytest.raises(ValidationError) as error:
        services.decision_change_target(
            kpi=tenant.kpi,
            by=tenant.executive,
            reason="x",
            target_value=1200.0,
            target_by=None,
            thresholds={"warning": 700, "critical": 900},  # critical above warning for a higher-is-better KPI
        )
    assert set(error.value.message_dict) & {"warning", "critical"}
    with pytest.raises(ValidationError, match="Nothing changed"):
        services.decision_change_target(
            kpi=tenant.kpi,
            by=tenant.executive,
            reason="x",
            target_value=1200.0,
            target_by=None,
            thresholds={"warning": 1000, "critical": 800},
        )
    assert not Decision.objects.exists() and not audited(tenant, "kpi.updated")


# --- ownership transfer, assign an action ---------------------------------------------------------------


def test_requesting_a_transfer_goes_through_the_transfer_request_and_another_decider_approves_it(tenant):
    OwnershipTransfer.objects.filter(kpi=tenant.kpi).update(state=OwnershipTransfer.State.CANCELLED)
    decision = services.decision_request_transfer(
        kpi=tenant.kpi, by=tenant.executive, to_owner=tenant.member, reason="Member runs it day to day."
    )
    transfer = decision.transfer
    assert (transfer.state, transfer.to_owner, transfer.requested_by) == (
        OwnershipTransfer.State.PENDING,
        tenant.member,
        tenant.executive.user,
    )
    assert audited(tenant, "decision.transfer_requested")
    assert [e.after["owner"] for e in audited(tenant, "kpi.transfer_requested")][0] == str(tenant.member)
    decided = services.decision_transfer(transfer=transfer, by=tenant.admin, approve=True, reason="Agreed.")
    assert Kpi.objects.get(pk=tenant.kpi.pk).owner == tenant.member
    assert (decided.kind, decided.transfer, decided.decided_by) == ("transfer_decided", transfer, tenant.admin.user)


def test_assigning_an_action_adds_it_to_the_episodes_path_and_tells_its_owner(tenant, escalated):
    with at(T0 + 2 * DAY + 2 * HOUR):
        path = file_path(tenant, escalated, date(2026, 11, 4))
        mitigation_path_review(path=path, by=tenant.executive, approve=True, comment="Credible plan.")
        decision = services.decision_assign_action(
            workstream=escalated,
            by=tenant.admin,
            reason="Freight needs its own owner.",
            description="Book sea capacity for January",
            owner=tenant.executive,
            due=date(2026, 11, 20),
        )
    action = decision.action
    assert (action.path, action.owner, action.due, action.description) == (
        path,
        tenant.executive,
        date(2026, 11, 20),
        "Book sea capacity for January",
    )
    assert audited(tenant, "mitigation_action.assigned") and audited(tenant, "decision.action_assigned")
    assert Notification.objects.filter(recipient=tenant.executive, kind="decision", channel="in_app").exists()
    assert WorkstreamEvent.objects.filter(workstream=escalated, verb="action_assigned").exists()


def test_an_action_needs_a_path_to_join(tenant, escalated):
    with at(T0 + 2 * DAY + 2 * HOUR), pytest.raises(ValidationError, match="No mitigation path"):
        services.decision_assign_action(
            workstream=escalated,
            by=tenant.executive,
            reason="x",
            description="Do it",
            owner=tenant.member,
            due=date(2026, 11, 20),
        )
    assert not MitigationAction.objects.exists() and not Decision.objects.exists()


# --- who decides, with which reason, in which session ------------------------------------------------------


def test_every_decision_needs_a_reason_and_nothing_changes_without_one(tenant, escalated):
    with at(T0 + 2 * DAY + 2 * HOUR), pytest.raises(ValidationError) as error:
        services.decision_accept_risk(workstream=escalated, by=tenant.executive, reason="  ", until=date(2026, 11, 9))
    assert "reason" in error.value.message_dict
    escalated.refresh_from_db()
    assert escalated.level == 1 and not Decision.objects.exists()


@pytest.mark.parametrize("who", ["member", "lead"])
def test_members_do_not_decide(tenant, escalated, who):
    by = getattr(tenant, who)
    with at(T0 + 2 * DAY + 2 * HOUR):
        with pytest.raises(PermissionDenied):
            services.decision_accept_risk(workstream=escalated, by=by, reason="x", until=date(2026, 11, 9))
        with pytest.raises(PermissionDenied):
            services.decision_change_target(
                kpi=tenant.kpi, by=by, reason="x", target_value=1.0, target_by=None, thresholds={}
            )
        with pytest.raises(PermissionDenied):
            review_sessions.review_session_start(org=tenant.org, by=by)
    assert not Decision.objects.exists() and not ReviewSession.objects.exists()


def test_a_closed_session_takes_no_decision(tenant):
    session = review_sessions.review_session_start(org=tenant.org, by=tenant.executive)
    review_sessions.review_session_close(session=session, by=tenant.executive)
    with pytest.raises(ValidationError, match="closed"):
        services.decision_change_target(
            kpi=tenant.kpi,
            by=tenant.executive,
            reason="x",
            target_value=900.0,
            target_by=None,
            thresholds={"warning": 800, "critical": 600},
            session=session,
        )
    assert Kpi.objects.get(pk=tenant.kpi.pk).target_value == 1200.0


def test_a_decider_of_another_organization_is_refused(tenant, stranger_tenant):
    with pytest.raises(PermissionDenied):
        services.decision_change_target(
            kpi=tenant.kpi,
            by=stranger_tenant.admin,
            reason="x",
            target_value=1.0,
            target_by=None,
            thresholds={"warning": 1, "critical": 0},
        )
    session = review_sessions.review_session_start(org=stranger_tenant.org, by=stranger_tenant.admin)
    with pytest.raises(PermissionDenied):
        services.decision_change_target(
            kpi=tenant.kpi,
            by=tenant.executive,
            reason="x",
            target_value=1.0,
            target_by=None,
            thresholds={"warning": 1, "critical": 0},
            session=session,
        )
    assert not Decision.objects.exists()


# --- what happened next ------------------------------------------------------------------------------------


def _decided(tenant: Tenant, decided_at: datetime, expected_by: date | None) -> Decision:
    return Decision.objects.create(
        organization=tenant.org,
        kind=Decision.Kind.RISK_ACCEPTED,
        kpi=tenant.kpi,
        decided_by=tenant.executive.user,
        decided_at=decided_at,
        reason="r",
        kpi_status="off_track",
        expected_by=expected_by,
    )


@pytest.mark.parametrize(
    "recovered, expected_by, now, state",
    [
        (datetime(2026, 11, 9, 22, 0, tzinfo=UTC), date(2026, 11, 9), T0 + 20 * DAY, "on_time"),  # 23:00 Berlin
        (datetime(2026, 11, 9, 23, 30, tzinfo=UTC), date(2026, 11, 9), T0 + 20 * DAY, "late"),  # 10 Nov in Berlin
        (None, date(2026, 11, 9), T0 + 20 * DAY, "missed"),
        (None, date(2026, 11, 30), T0 + 5 * DAY, "due"),
        (datetime(2026, 11, 5, 8, 0, tzinfo=UTC), None, T0 + 20 * DAY, "recovered"),
        (None, None, T0 + 20 * DAY, "open"),
    ],
)
def test_the_outcome_comes_from_the_kpis_status_history(tenant, recovered, expected_by, now, state):
    Kpi.objects.filter(pk=tenant.kpi.pk).update(status="on_track" if recovered else "off_track")
    tenant.kpi.refresh_from_db()
    decision = _decided(tenant, T0 + DAY, expected_by)
    change(tenant.kpi, T0 - DAY)  # before the decision: not a recovery after it
    if recovered:
        StatusChange.objects.create(
            organization=tenant.org, kpi=tenant.kpi, old="off_track", new="on_track", changed_at=recovered
        )
    log = list(selectors.decision_list(org=tenant.org))
    outcome = selectors.outcomes(org=tenant.org, decisions=log, now=now)[decision.pk]
    assert outcome.state == state, outcome.text


# --- the decision log pages ------------------------------------------------------------------------------


def test_the_organizations_log_lists_who_decided_what_and_what_happened_next(tenant, stranger_tenant):
    Kpi.objects.filter(pk=tenant.kpi.pk).update(status="off_track")
    _decided(tenant, T0, date(2026, 11, 9))
    client = tenant.client(tenant.member)  # every member reads the log
    page = client.get(reverse("escalations:decision_log", args=[tenant.org.slug])).content.decode()
    assert "Accepted the risk" in page and "Throughput" in page and "Missed: still off track" in page
    filtered = client.get(reverse("escalations:decision_log", args=[tenant.org.slug]), {"kind": "target_changed"})
    assert "Throughput" not in filtered.content.decode()
    # The stranger's own log is empty.
    other = stranger_tenant.client(stranger_tenant.admin).get(
        reverse("escalations:decision_log", args=[stranger_tenant.org.slug])
    )
    assert "Throughput" not in other.content.decode() and "No decision recorded yet" in other.content.decode()


def test_the_kpi_and_workstream_pages_load_their_decisions_panel(tenant):
    decision = _decided(tenant, T0, None)
    ws = tenant.episode.workstream
    Decision.objects.filter(pk=decision.pk).update(workstream=ws)
    client = tenant.client(tenant.member)
    kpi_page = client.get(reverse("scorecards:kpi_detail", args=[tenant.org.slug, tenant.kpi.pk])).content.decode()
    panel_url = reverse("escalations:kpi_decisions", args=[tenant.org.slug, tenant.kpi.pk])
    assert f'hx-get="{panel_url}"' in kpi_page and f'href="{panel_url}"' in kpi_page  # htmx, and a plain link
    panel = client.get(panel_url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="kpi-decisions"' in panel and "<html" not in panel and "Accepted the risk" in panel
    assert "Accepted the risk" in client.get(panel_url).content.decode()  # the full page without JavaScript
    ws_url = reverse("escalations:workstream_decisions", args=[tenant.org.slug, ws.pk])
    ws_page = client.get(reverse("escalations:workstream_detail", args=[tenant.org.slug, ws.pk])).content.decode()
    assert f'hx-get="{ws_url}"' in ws_page
    assert "Accepted the risk" in client.get(ws_url, HTTP_HX_REQUEST="true").content.decode()


def test_the_log_reads_a_page_of_decisions_in_a_constant_number_of_queries(tenant, django_assert_max_num_queries):
    for n in range(30):
        _decided(tenant, T0 + n * HOUR, date(2026, 11, 9))
    client = tenant.client(tenant.member)
    client.get(reverse("escalations:decision_log", args=[tenant.org.slug]))  # warm the session and the membership
    with django_assert_max_num_queries(12):
        assert client.get(reverse("escalations:decision_log", args=[tenant.org.slug])).status_code == 200
