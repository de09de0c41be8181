"""The executive review: what the agenda lists and in which order, decisions taken in place on its page, review
sessions and their minutes, the steering pack as a PDF."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from escalations.decisions import agenda, review_sessions, services
from escalations.decisions.pack import pack_context
from escalations.models import (
    Decision,
    DependencyReview,
    MitigationAction,
    MitigationPath,
    ReviewAttendee,
    ReviewSession,
    Workstream,
)
from governance.models import AuditEvent, Membership
from scorecards.models import Kpi
from tests.conftest import Tenant
from tests.factories import KpiFactory, TeamFactory

DAY = timedelta(days=1)


def url(name: str, tenant: Tenant, *args) -> str:
    return reverse(name, args=[tenant.org.slug, *args])


def red(tenant: Tenant, key: str, status: str, days: float, *, team=None) -> Kpi:
    """A KPI of the tenant that went `status` `days` ago."""
    now = timezone.now()
    return KpiFactory(
        organization=tenant.org,
        team=team or tenant.team,
        owner=tenant.lead,
        key=key,
        name=key.split(".")[-1].replace("_", " ").capitalize(),
        status=status,
        status_since=now - timedelta(days=days),
    )


def episode(kpi: Kpi, days: float, severity: str | None = None, **fields) -> Workstream:
    return Workstream.objects.create(
        organization=kpi.organization,
        kpi=kpi,
        severity=severity or kpi.status,
        opened_at=timezone.now() - timedelta(days=days),
        **fields,
    )


def path(ws: Workstream, tenant: Tenant, state: str, days: float) -> MitigationPath:
    filed = MitigationPath.objects.create(
        organization=ws.organization,
        workstream=ws,
        root_cause="Campaign paused",
        expected_recovery=date.today() + 20 * DAY,
        filed_by=tenant.lead.user,
        filed_at=timezone.now() - timedelta(days=days),
        state=state,
    )
    MitigationAction.objects.create(
        organization=ws.organization, path=filed, description="Restart", owner=tenant.member, due=date.today() + DAY
    )
    return filed


@pytest.fixture
def board(tenant: Tenant) -> dict[str, Kpi]:
    """One KPI for every reason to decide, and some that need nothing."""
    kpis = {}
    now = timezone.now()
    kpis["old_off"] = red(tenant, "ops.old_off", "off_track", 5)
    episode(kpis["old_off"], 5)
    kpis["new_off"] = red(tenant, "ops.new_off", "off_track", 3)
    episode(kpis["new_off"], 3)
    kpis["path"] = red(tenant, "ops.path", "at_risk", 6)
    path(episode(kpis["path"], 6), tenant, MitigationPath.State.SUBMITTED, 1)
    kpis["exhausted"] = red(tenant, "ops.exhausted", "at_risk", 8)
    episode(kpis["exhausted"], 8, exhausted_at=now - 4 * DAY)
    kpis["impact"] = red(tenant, "ops.impact", "at_risk", 2)
    preventive = episode(kpis["impact"], 2, kind=Workstream.Kind.PREVENTIVE)
    DependencyReview.objects.create(
        organization=tenant.org,
        kpi=kpis["impact"],
        opened_at=now - 2 * DAY,
        due_at=now,
        answer=DependencyReview.Answer.IMPACT,
        answered_at=now - 2 * DAY,
        workstream=preventive,
    )
    kpis["stale"] = red(tenant, "ops.stale", "stale", 1)
    episode(kpis["stale"], 1, kind=Workstream.Kind.DATA_FRESHNESS)
    # Nothing to decide: an approved path, an at-risk KPI still in its owner's hands, a green one.
    kpis["approved"] = red(tenant, "ops.approved", "off_track", 9)
    path(episode(kpis["approved"], 9), tenant, MitigationPath.State.APPROVED, 8)
    kpis["running"] = red(tenant, "ops.running", "at_risk", 1)
    episode(kpis["running"], 1)
    kpis["green"] = red(tenant, "ops.green", "on_track", 30)
    return kpis


def keys(items) -> list[str]:
    return [i.kpi.key for i in items]


# --- the agenda ------------------------------------------------------------------------------------------------


def test_the_agenda_lists_what_needs_a_decision_most_severe_first_then_longest_waiting(tenant, board):
    items = agenda.agenda(org=tenant.org)
    assert keys(items) == [
        "ops.old_off",  # off track 5 days
        "ops.new_off",  # off track 3 days
        "ops.exhausted",  # at risk, exhausted 4 days ago
        "ops.impact",  # at risk, impact answered 2 days ago
        "ops.path",  # at risk, path filed a day ago
        "ops.stale",
    ]
    reasons = {i.kpi.key: [r.code for r in i.reasons] for i in items}
    assert reasons["ops.path"] == ["path"] and reasons["ops.exhausted"] == ["exhausted"]
    assert reasons["ops.impact"] == ["impact"] and reasons["ops.stale"] == ["stale"]
    assert reasons["ops.old_off"] == ["off_track"]
    path_item = items[4]
    assert path_item.awaiting and [a.description for a in path_item.path.actions.all()] == ["Restart"]


def test_the_agenda_is_filtered_by_team(tenant, board):
    sales = TeamFactory(organization=tenant.org, key="sales", name="Sales")
    red(tenant, "sales.off", "off_track", 4, team=sales)
    assert keys(agenda.agenda(org=tenant.org, team_id=sales.pk)) == ["sales.off"]
    assert "sales.off" not in keys(agenda.agenda(org=tenant.org, team_id=tenant.team.pk))


def test_the_agenda_shows_upstream_and_downstream_context(tenant, board):
    from dependencies.models import Dependency

    Dependency.objects.create(
        organization=tenant.org, upstream=board["green"], downstream=board["old_off"], kind="blocks"
    )
    Dependency.objects.create(
        organization=tenant.org, upstream=board["old_off"], downstream=board["stale"], kind="informs"
    )
    items = {i.kpi.key: i for i in agenda.agenda(org=tenant.org)}
    assert [e.upstream.key for e in items["ops.old_off"].upstream] == ["ops.green"]
    assert [e.downstream.key for e in items["ops.old_off"].downstream] == ["ops.stale"]


def test_the_agenda_reads_in_a_constant_number_of_queries(tenant, board, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        few = agenda.agenda(org=tenant.org)
    for n in range(12):
        kpi = red(tenant, f"ops.more_{n}", "off_track", n + 1)
        path(episode(kpi, n + 1), tenant, MitigationPath.State.SUBMITTED, 1)
    with django_assert_max_num_queries(8):
        many = agenda.agenda(org=tenant.org)
    assert len(many) == len(few) + 12
    with django_assert_max_num_queries(2):  # every chart of the agenda
        agenda.attach_charts([i.kpi for i in many], tenant.org.tzinfo)


def test_a_decision_takes_an_item_off_the_agenda_until_its_reason_arises_again(tenant, board):
    services.decision_change_target(
        kpi=board["old_off"],
        by=tenant.executive,
        reason="Plan changed.",
        target_value=1000.0,
        target_by=None,
        thresholds={"warning": 900, "critical": 700},
    )
    assert "ops.old_off" not in keys(agenda.agenda(org=tenant.org))
    # Off track again after the decision (a new breach): back on the agenda.
    Kpi.objects.filter(pk=board["old_off"].pk).update(status_since=timezone.now() + timedelta(seconds=1))
    assert "ops.old_off" in keys(agenda.agenda(org=tenant.org, now=timezone.now() + DAY))


def test_a_path_awaiting_review_stays_until_it_is_approved_or_rejected(tenant, board):
    services.decision_change_target(
        kpi=board["path"],
        by=tenant.executive,
        reason="Plan changed.",
        target_value=1000.0,
        target_by=None,
        thresholds={"warning": 900, "critical": 700},
    )
    assert "ops.path" in keys(agenda.agenda(org=tenant.org))
    waiting = MitigationPath.objects.get(workstream__kpi=board["path"], state="submitted")
    services.decision_review_path(path=waiting, by=tenant.executive, approve=True, reason="Good plan.")
    assert "ops.path" not in keys(agenda.agenda(org=tenant.org))


def test_an_accepted_risk_holds_the_item_until_its_day_then_it_returns(tenant, board):
    ws = Workstream.objects.get(kpi=board["new_off"])
    today = timezone.localdate(timezone=tenant.org.tzinfo)
    services.decision_accept_risk(workstream=ws, by=tenant.executive, reason="Seasonal.", until=today + 3 * DAY)
    assert "ops.new_off" not in keys(agenda.agenda(org=tenant.org))
    later = datetime.combine(today + 3 * DAY, datetime.min.time(), tenant.org.tzinfo) + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        item = next(i for i in agenda.agenda(org=tenant.org) if i.kpi.key == "ops.new_off")
    assert "risk_expired" in [r.code for r in item.reasons if r.open]


def test_a_session_keeps_the_items_it_decided(tenant, board):
    session = review_sessions.review_session_start(org=tenant.org, by=tenant.executive)
    services.decision_change_target(
        kpi=board["old_off"],
        by=tenant.executive,
        reason="Plan changed.",
        target_value=1000.0,
        target_by=None,
        thresholds={"warning": 900, "critical": 700},
        session=session,
    )
    items = {i.kpi.key: i for i in agenda.agenda(org=tenant.org, session=session)}
    assert items["ops.old_off"].decided and [d.reason for d in items["ops.old_off"].decisions] == ["Plan changed."]
    assert "ops.old_off" not in keys(agenda.agenda(org=tenant.org))  # decided: off the plain agenda


def test_the_stranger_sees_none_of_the_tenants_items(tenant, board, stranger_tenant):
    assert agenda.agenda(org=stranger_tenant.org) == []


# --- the page ----------------------------------------------------------------------------------------------------


def test_the_review_page_is_for_executives_and_admins(tenant, board):
    for who in ("executive", "admin"):
        page = tenant.client(getattr(tenant, who)).get(url("escalations:review_agenda", tenant))
        assert page.status_code == 200 and 'id="item-' in page.content.decode()
    refused = tenant.client(tenant.member).get(url("escalations:review_agenda", tenant))
    assert refused.status_code == 403
    assert AuditEvent.objects.filter(actor=tenant.member.user, verb="security.permission_denied").exists()


def test_the_page_carries_the_chart_the_path_and_keyboard_navigation_without_inline_script(tenant, board):
    html = tenant.client(tenant.executive).get(url("escalations:review_agenda", tenant)).content.decode()
    assert html.count('<svg class="chart') == 6 and "Campaign paused" in html
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert any("js/review.js" in s for s in scripts)
    assert all("src=" in s for s in scripts)  # the CSP forbids inline scripts
    assert " style=" not in html
    # Without JavaScript the items link to each other.
    assert f'href="#item-{board["new_off"].pk}"' in html


def test_the_page_reads_in_a_constant_number_of_queries(tenant, board, django_assert_max_num_queries):
    client = tenant.client(tenant.executive)
    client.get(url("escalations:review_agenda", tenant))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get(url("escalations:review_agenda", tenant))
    for n in range(8):
        kpi = red(tenant, f"ops.more_{n}", "off_track", n + 1)
        path(episode(kpi, n + 1), tenant, MitigationPath.State.SUBMITTED, 1)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(url("escalations:review_agenda", tenant))


def test_a_decision_taken_in_place_redraws_its_item(tenant, board):
    client = tenant.client(tenant.executive)
    kpi = board["path"]
    response = client.post(
        url("escalations:review_decide", tenant, kpi.pk),
        {"kind": "path", "decision": "approve", "reason": "Owners and dates are clear."},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert f'id="item-{kpi.pk}"' in html and "Decided" in html and "Path approved" in html
    assert Decision.objects.get(kpi=kpi).kind == "path_approved"


def test_a_refused_decision_comes_back_with_its_reason_and_nothing_changes(tenant, board):
    client = tenant.client(tenant.executive)
    kpi = board["new_off"]
    data = {"kind": "risk", "until": "2000-01-01", "reason": "Fine."}
    response = client.post(url("escalations:review_decide", tenant, kpi.pk), data, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "Accept the risk until a day after today" in html
    assert re.search(r'<details class="decide decide-risk" open>', html)
    plain = client.post(url("escalations:review_decide", tenant, kpi.pk), {"kind": "risk", "until": "", "reason": ""})
    assert plain.status_code == 422 and "<html" in plain.content.decode()
    assert not Decision.objects.exists()


def test_without_javascript_a_decision_redirects_back_to_its_item(tenant, board):
    kpi = board["stale"]
    response = tenant.client(tenant.admin).post(
        url("escalations:review_decide", tenant, kpi.pk),
        {"kind": "transfer", "to_owner": tenant.member.pk, "reason": "Member owns the data feed."},
    )
    assert response.status_code == 302 and response["Location"].endswith(f"/review/#item-{kpi.pk}")
    assert Decision.objects.get().transfer.to_owner == tenant.member


def test_a_member_cannot_post_a_decision(tenant, board):
    response = tenant.client(tenant.lead).post(
        url("escalations:review_decide", tenant, board["path"].pk),
        {"kind": "path", "decision": "approve", "reason": "Mine."},
    )
    assert response.status_code == 403 and not Decision.objects.exists()


def test_a_form_cannot_name_another_organizations_session_or_member(tenant, board, stranger_tenant):
    foreign = review_sessions.review_session_start(org=stranger_tenant.org, by=stranger_tenant.admin)
    client = tenant.client(tenant.executive)
    for data in (
        {"kind": "transfer", "to_owner": stranger_tenant.member.pk, "reason": "x"},
        {"kind": "risk", "until": "2099-01-01", "reason": "x", "session": foreign.pk},
    ):
        client.post(url("escalations:review_decide", tenant, board["new_off"].pk), data)
    assert not Decision.objects.exists()


# --- sessions ------------------------------------------------------------------------------------------------------


def test_a_session_starts_records_attendees_takes_decisions_and_closes_into_minutes(tenant, board):
    client = tenant.client(tenant.executive)
    response = client.post(
        url("escalations:review_session_start", tenant), {"title": "", "attendees": [tenant.admin.pk]}
    )
    session = ReviewSession.objects.get()
    assert response["Location"] == url("escalations:review_session_detail", tenant, session.pk)
    assert session.title.startswith("Steering review ")
    assert set(session.attendees.all()) == {tenant.executive, tenant.admin}  # the starter attends
    # A second one cannot start while it runs.
    client.post(url("escalations:review_session_start", tenant), {"title": "Another"})
    assert ReviewSession.objects.count() == 1
    page = client.get(url("escalations:review_session_detail", tenant, session.pk)).content.decode()
    assert "Close the session" in page and 'name="session"' in page
    client.post(
        url("escalations:review_session_attendees", tenant, session.pk),
        {"attendees": [tenant.executive.pk, tenant.member.pk]},
    )
    assert set(session.attendees.all()) == {tenant.executive, tenant.member}
    client.post(
        url("escalations:review_decide", tenant, board["old_off"].pk),
        {"kind": "risk", "until": str(date.today() + 5 * DAY), "reason": "Known dip.", "session": session.pk},
    )
    client.post(url("escalations:review_session_close", tenant, session.pk), {"summary": "Two weeks to recover."})
    session.refresh_from_db()
    assert not session.is_open and session.closed_by == tenant.executive.user
    assert [d.kind for d in session.decisions.all()] == ["risk_accepted"]
    minutes = (
        tenant.client(tenant.member).get(url("escalations:review_session_detail", tenant, session.pk)).content.decode()
    )
    assert "Known dip." in minutes and "Two weeks to recover." in minutes and "Steering pack (PDF)" in minutes
    verbs = set(AuditEvent.objects.filter(organization=tenant.org).values_list("verb", flat=True))
    assert {"review_session.started", "review_session.attendees_set", "review_session.closed"} <= verbs
    assert all(a.organization_id == tenant.org.pk for a in ReviewAttendee.objects.all())


def test_two_sessions_on_one_day_have_distinct_titles(tenant):
    """The default title names the day and the time; a title taken already gets a number."""
    morning = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
    titles = []
    for at, title in ((morning, ""), (morning + timedelta(hours=5), ""), (morning + timedelta(hours=5), "")):
        with time_machine.travel(at, tick=False):
            session = review_sessions.review_session_start(org=tenant.org, by=tenant.executive, title=title)
            review_sessions.review_session_close(session=session, by=tenant.executive)
        titles.append(session.title)
    for title in ("Board", "Board"):
        session = review_sessions.review_session_start(org=tenant.org, by=tenant.executive, title=title)
        review_sessions.review_session_close(session=session, by=tenant.executive)
        titles.append(session.title)
    assert titles == [
        "Steering review 30 Nov 2026, 09:00",
        "Steering review 30 Nov 2026, 14:00",
        "Steering review 30 Nov 2026, 14:00 (2)",
        "Board",
        "Board (2)",
    ]


def test_members_see_sessions_but_do_not_run_them(tenant):
    client = tenant.client(tenant.member)
    listing = client.get(url("escalations:review_session_list", tenant)).content.decode()
    assert "Start a review session" not in listing
    assert client.post(url("escalations:review_session_start", tenant), {"title": "Mine"}).status_code == 403
    session = review_sessions.review_session_start(org=tenant.org, by=tenant.admin)
    for name in ("escalations:review_session_attendees", "escalations:review_session_close"):
        assert client.post(url(name, tenant, session.pk), {"attendees": [tenant.member.pk]}).status_code == 403
    assert ReviewSession.objects.get().is_open


def test_attendees_are_active_members_of_the_organization(tenant, stranger_tenant):
    with pytest.raises(Exception, match="active members"):
        review_sessions.review_session_start(org=tenant.org, by=tenant.executive, attendees=[stranger_tenant.member])
    Membership.objects.filter(pk=tenant.member.pk).update(is_active=False)
    tenant.member.refresh_from_db()
    with pytest.raises(Exception, match="active members"):
        review_sessions.review_session_start(org=tenant.org, by=tenant.executive, attendees=[tenant.member])


# --- the steering pack ------------------------------------------------------------------------------------------


def test_the_steering_pack_is_a_pdf_with_the_summary_charts_decisions_and_open_actions(tenant, board):
    session = review_sessions.review_session_start(org=tenant.org, by=tenant.executive, title="November steering")
    services.decision_change_target(
        kpi=board["old_off"],
        by=tenant.executive,
        reason="Board lowered the plan for the quarter.",
        target_value=1000.0,
        target_by=None,
        thresholds={"warning": 900, "critical": 700},
        session=session,
    )
    review_sessions.review_session_close(session=session, by=tenant.executive, summary="Recover by December.")
    response = tenant.client(tenant.member).get(url("escalations:review_session_pack", tenant, session.pk))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert "steering-pack-acme-" in response["Content-Disposition"]
    pdf = PdfReader(io.BytesIO(response.content))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert len(pdf.pages) >= 2
    for expected in (
        "Steering pack",
        "November steering",
        "Scorecard summary",
        "Old off",  # the KPI decided on, with its chart's title
        "Board lowered the plan for the quarter.",
        "Changed the target",
        "Open actions",
        "Restart",  # an open action of an awaiting path
        "Recover by December.",
    ):
        assert expected in text, expected


def test_the_pack_and_the_session_page_count_the_same_open_actions(tenant, board):
    """Both list the organization's open actions from one selector (session_open_actions), marking those the session
    assigned: the pack's count is the page's."""
    session = review_sessions.review_session_start(org=tenant.org, by=tenant.executive, title="November steering")
    services.decision_assign_action(
        workstream=Workstream.objects.get(kpi=board["path"]),
        by=tenant.executive,
        reason="Someone must call the supplier.",
        description="Call the supplier",
        owner=tenant.member,
        due=date.today() + 3 * DAY,
        session=session,
    )
    open_now = MitigationAction.objects.filter(
        organization=tenant.org, done_at=None, path__workstream__resolved_at=None
    ).exclude(path__state="rejected")
    assert open_now.count() == 3  # two of the board's paths, and the one assigned here
    page = tenant.client(tenant.member).get(url("escalations:review_session_detail", tenant, session.pk))
    html = page.content.decode()
    pack = render_to_string("escalations/review_pack.html", pack_context(session, None))
    assert page.context["actions"].total == pack_context(session, None)["actions"].total == 3
    assert 'Open actions <span class="count">3</span>' in html and "<dt>Open actions</dt><dd>3</dd>" in pack
    assert html.count("assigned in this review") == 1 and pack.count("assigned in this review") == 1
