"""The people side of a workstream, through its pages: filing a path, reviewing, acknowledging, reporting on
actions, closing; the inbox, the notifications and the KPI pages that point at an open episode."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from escalations.models import (
    DependencyReview,
    EscalationLevel,
    EscalationPolicy,
    MitigationAction,
    MitigationPath,
    Notification,
    NotificationPreference,
    Task,
    Workstream,
)
from escalations.workstreams.selectors import decision_queue
from escalations.workstreams.services import ActionDraft, mitigation_path_file, mitigation_path_review
from governance.models import AuditEvent, Membership, Role
from scorecards.models import Kpi
from scorecards.selectors import with_workstream_state
from tests.conftest import Tenant
from tests.escalations.engine.test_engine import change, sweep
from tests.factories import KpiFactory, MembershipFactory

DAY, HOUR = timedelta(days=1), timedelta(hours=1)


@pytest.fixture
def episode(tenant: Tenant) -> Workstream:
    """An open workstream on the tenant's KPI (owner: lead), escalated an hour ago to level 1, whose target is
    a plain member (target@acme.test); executives are level 2. Built by the sweeps, as in production."""
    tenant.target = MembershipFactory(organization=tenant.org, role=Role.MEMBER, user__email="target@acme.test")
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="standard", name="Standard", mitigation_due=2 * DAY, ack_timeout=4 * HOUR
    )
    EscalationLevel.objects.create(
        organization=tenant.org, policy=policy, position=1, targets=["user:target@acme.test"], wait=DAY
    )
    EscalationLevel.objects.create(
        organization=tenant.org, policy=policy, position=2, targets=["role:executive"], wait=2 * DAY
    )
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="standard")
    tenant.kpi.refresh_from_db()
    opened = timezone.now() - 2 * DAY - HOUR
    change(tenant.kpi, opened)
    sweep(opened)
    sweep(timezone.now())
    ws = Workstream.objects.get(kpi=tenant.kpi)
    assert ws.level == 1 and Task.objects.filter(kind="escalation", assignee=tenant.target).exists()
    return ws


def today(tenant: Tenant) -> date:
    return timezone.localdate(timezone=tenant.org.tzinfo)


def path_data(root_cause: str, recovery: date | str, rows: list[tuple], **extra) -> dict:
    """The filing form's POST: the path's fields, the action rows and the formset's management form."""
    data = {
        "root_cause": root_cause,
        "expected_recovery": str(recovery),
        "actions-TOTAL_FORMS": str(len(rows)),
        "actions-INITIAL_FORMS": "0",
        "actions-MIN_NUM_FORMS": "0",
        "actions-MAX_NUM_FORMS": "10",
        **extra,
    }
    for i, (description, owner, due) in enumerate(rows):
        data |= {f"actions-{i}-description": description, f"actions-{i}-owner": owner, f"actions-{i}-due": str(due)}
    return data


def url(name: str, tenant: Tenant, **kwargs) -> str:
    return reverse(name, kwargs={"org_slug": tenant.org.slug, **kwargs})


def file_path(tenant: Tenant, ws: Workstream) -> MitigationPath:
    return mitigation_path_file(
        workstream=ws,
        by=tenant.lead,
        root_cause="Campaign paused",
        expected_recovery=today(tenant) + 10 * DAY,
        actions=[ActionDraft("Restart the campaign", tenant.member, today(tenant) + 3 * DAY)],
    )


def htmx(client: Client, path: str, data: dict | None = None):
    return client.post(path, data or {}, HTTP_HX_REQUEST="true")


def denied(tenant: Tenant, membership: Membership) -> int:
    events = AuditEvent.objects.filter(
        organization=tenant.org, actor=membership.user, verb="security.permission_denied"
    )
    return sum(e.times for e in events)


# --- filing a path ----------------------------------------------------------------------------------


def test_the_owner_files_a_path_with_two_actions_through_the_page(tenant, episode):
    client = tenant.client(tenant.lead)
    page = client.get(url("escalations:workstream_detail", tenant, workstream_id=episode.pk)).content.decode()
    assert 'id="file-path"' in page and 'id="action-row-1"' in page  # two blank rows work without JavaScript
    data = path_data(
        "Campaign paused in week 44",
        today(tenant) + 10 * DAY,
        [
            ("Restart the campaign", tenant.member.pk, today(tenant) + 3 * DAY),
            ("Hire a planner", tenant.executive.pk, today(tenant) + 5 * DAY),
        ],
    )
    response = client.post(url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk), data)
    assert response.status_code == 302
    path = MitigationPath.objects.get(workstream=episode)
    assert (path.root_cause, path.state, path.filed_by) == ("Campaign paused in week 44", "submitted", tenant.lead.user)
    assert [(a.description, a.owner, a.due) for a in path.actions.order_by("due")] == [
        ("Restart the campaign", tenant.member, today(tenant) + 3 * DAY),
        ("Hire a planner", tenant.executive, today(tenant) + 5 * DAY),
    ]
    page = client.get(response["Location"]).content.decode()
    assert "Mitigation path filed" in page and "Awaiting review" in page and 'id="file-path"' not in page


def test_add_action_swaps_in_the_form_with_one_more_row_and_keeps_what_was_typed(tenant, episode):
    client = tenant.client(tenant.lead)
    post = url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk)
    due = today(tenant) + 3 * DAY
    response = htmx(
        client,
        post,
        path_data("Supplier strike", "", [("Find a second supplier", tenant.member.pk, due)], add_row="1"),
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<section class="panel" id="file-path"')
    assert 'id="action-row-1"' in html and 'id="action-row-2"' not in html
    assert 'value="Find a second supplier"' in html and "Supplier strike" in html
    assert 'name="actions-TOTAL_FORMS" value="2"' in html and "autofocus" in html
    assert not MitigationPath.objects.exists()
    # The second row filled in, the path is filed with both actions; htmx gets the refreshed page body.
    rows = [("Find a second supplier", tenant.member.pk, due), ("Raise prices", tenant.lead.pk, due + DAY)]
    response = htmx(client, post, path_data("Supplier strike", today(tenant) + 9 * DAY, rows))
    html = response.content.decode()
    assert response.status_code == 200 and 'id="ws-body"' in html and "Mitigation path filed" in html
    assert MitigationPath.objects.get().actions.count() == 2


def test_remove_takes_out_that_row_and_keeps_the_others(tenant, episode):
    due = today(tenant) + 3 * DAY
    rows = [("First", tenant.member.pk, due), ("Second", tenant.member.pk, due), ("Third", tenant.lead.pk, due)]
    response = tenant.client(tenant.lead).post(
        url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk),
        path_data("x", "", rows, remove_row="1"),
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html  # without JavaScript: the whole page again
    assert 'value="First"' in html and 'value="Third"' in html and 'value="Second"' not in html
    assert 'name="actions-TOTAL_FORMS" value="2"' in html
    assert not MitigationPath.objects.exists()


def test_an_explanation_without_actions_is_refused_and_nothing_is_stored(tenant, episode):
    client = tenant.client(tenant.lead)
    data = path_data("Bad luck", today(tenant) + 5 * DAY, [("", "", ""), ("", "", "")])
    response = client.post(url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk), data)
    assert response.status_code == 422
    assert "An explanation is not a mitigation path" in response.content.decode()
    response = htmx(client, url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk), data)
    assert response.status_code == 200 and "An explanation is not a mitigation path" in response.content.decode()
    assert not MitigationPath.objects.exists() and not MitigationAction.objects.exists()
    assert Task.objects.get(kind="mitigation").state == "open"


def test_the_service_errors_show_on_their_fields(tenant, episode):
    data = path_data("  ", today(tenant) - DAY, [("Act", tenant.member.pk, today(tenant) - DAY)])
    response = tenant.client(tenant.lead).post(
        url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk), data
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "This field is required" in html  # a blank root cause is caught by the form already
    data["root_cause"] = "Real cause"
    html = tenant.client(tenant.lead).post(
        url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk), data
    )
    html = html.content.decode()
    assert "The expected recovery must be a day after today." in html and "Action 1 is due in the past." in html
    assert not MitigationPath.objects.exists()


def test_an_action_owner_from_another_organization_is_refused(tenant, stranger_tenant, episode):
    data = path_data("Cause", today(tenant) + 5 * DAY, [("Act", stranger_tenant.member.pk, today(tenant) + DAY)])
    response = tenant.client(tenant.lead).post(
        url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk), data
    )
    assert response.status_code == 422 and "Select a valid choice" in response.content.decode()
    assert not MitigationPath.objects.exists()


def test_an_owner_from_any_team_may_own_an_action(tenant, episode):
    elsewhere = MembershipFactory(organization=tenant.org, role=Role.MEMBER)  # in no team at all
    data = path_data("Cause", today(tenant) + 5 * DAY, [("Act", elsewhere.pk, today(tenant) + DAY)])
    response = tenant.client(tenant.lead).post(
        url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk), data
    )
    assert response.status_code == 302 and MitigationAction.objects.get().owner == elsewhere


@pytest.mark.parametrize("who", ["member", "executive", "admin"])
def test_only_the_owner_files(tenant, episode, who):
    someone = getattr(tenant, who)
    data = path_data("Cause", today(tenant) + 5 * DAY, [("Act", tenant.member.pk, today(tenant) + DAY)])
    response = tenant.client(someone).post(
        url("escalations:mitigation_path_file", tenant, workstream_id=episode.pk), data
    )
    assert response.status_code == 403 and denied(tenant, someone) == 1
    assert not MitigationPath.objects.exists()
    page = (
        tenant.client(someone)
        .get(url("escalations:workstream_detail", tenant, workstream_id=episode.pk))
        .content.decode()
    )
    assert 'id="file-path"' not in page


def test_after_a_rejection_the_owner_revises_the_rejected_path(tenant, episode):
    path = file_path(tenant, episode)
    mitigation_path_review(path=path, by=tenant.executive, approve=False, comment="Too vague")
    page = (
        tenant.client(tenant.lead)
        .get(url("escalations:workstream_detail", tenant, workstream_id=episode.pk))
        .content.decode()
    )
    assert "File a revised mitigation path" in page and 'value="Restart the campaign"' in page
    assert "Too vague" in page


# --- reviewing, acknowledging, reporting, closing -------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "allowed"),
    [("executive", True), ("target", True), ("member", False), ("admin", False), ("lead", False)],
)
def test_executives_and_escalation_targets_review(tenant, episode, who, allowed):
    path = file_path(tenant, episode)
    someone = getattr(tenant, who)
    client = tenant.client(someone)
    page = client.get(url("escalations:workstream_detail", tenant, workstream_id=episode.pk)).content.decode()
    assert ('id="review"' in page) == allowed
    response = client.post(
        url("escalations:mitigation_path_review", tenant, path_id=path.pk), {"decision": "approve", "reason": "Good"}
    )
    path.refresh_from_db()
    if allowed:
        assert response.status_code == 302 and path.state == "approved" and path.reviewed_by == someone.user
        episode.refresh_from_db()
        assert episode.next_escalation_at is None
    else:
        assert response.status_code == 403 and path.state == "submitted" and denied(tenant, someone) == 1


def test_a_review_needs_a_reason(tenant, episode):
    path = file_path(tenant, episode)
    client = tenant.client(tenant.executive)
    response = client.post(url("escalations:mitigation_path_review", tenant, path_id=path.pk), {"decision": "reject"})
    assert response.status_code == 422 and "Every decision needs its reason on record." in response.content.decode()
    path.refresh_from_db()
    assert path.state == "submitted"
    response = htmx(
        client,
        url("escalations:mitigation_path_review", tenant, path_id=path.pk),
        {"decision": "reject", "reason": "Vague"},
    )
    assert response.status_code == 200 and "rejected: it goes back to the owner" in response.content.decode()
    path.refresh_from_db()
    assert (path.state, path.review_comment) == ("rejected", "Vague")


@pytest.mark.parametrize(("who", "allowed"), [("target", True), ("executive", False), ("lead", False)])
def test_only_the_assignee_acknowledges_a_task(tenant, episode, who, allowed):
    task = Task.objects.get(kind="escalation")
    someone = getattr(tenant, who)
    response = tenant.client(someone).post(url("escalations:task_acknowledge", tenant, task_id=task.pk))
    task.refresh_from_db()
    if allowed:
        assert response.status_code == 302 and task.state == "acknowledged"
        episode.refresh_from_db()
        assert episode.renotify and episode.next_escalation_at == task.acknowledged_at + 4 * HOUR
    else:
        assert response.status_code == 403 and task.state == "open" and denied(tenant, someone) == 1


@pytest.mark.parametrize(("who", "allowed"), [("member", True), ("lead", True), ("executive", False), ("admin", False)])
def test_the_action_owner_and_the_kpi_owner_report_on_an_action(tenant, episode, who, allowed):
    action = file_path(tenant, episode).actions.get()  # owned by member; the KPI by lead
    someone = getattr(tenant, who)
    client = tenant.client(someone)
    page = client.get(url("escalations:workstream_detail", tenant, workstream_id=episode.pk)).content.decode()
    assert (url("escalations:action_update", tenant, action_id=action.pk) in page) == allowed
    response = client.post(
        url("escalations:action_update", tenant, action_id=action.pk), {"progress": "Booked", "done": "1"}
    )
    action.refresh_from_db()
    if allowed:
        assert response.status_code == 302 and action.done_at is not None and action.progress == "Booked"
    else:
        assert response.status_code == 403 and action.done_at is None and denied(tenant, someone) == 1


def test_an_empty_progress_report_is_refused(tenant, episode):
    action = file_path(tenant, episode).actions.get()
    response = tenant.client(tenant.member).post(
        url("escalations:action_update", tenant, action_id=action.pk), {"progress": " "}
    )
    assert response.status_code == 422 and "Write what has happened" in response.content.decode()
    response = htmx(
        tenant.client(tenant.member),
        url("escalations:action_update", tenant, action_id=action.pk),
        {"progress": "Half"},
    )
    assert response.status_code == 200 and "Progress recorded." in response.content.decode()
    action.refresh_from_db()
    assert (action.progress, action.done_at) == ("Half", None)


@pytest.mark.parametrize("who", ["admin", "lead", "member", "target"])
def test_only_an_executive_closes(tenant, episode, who):
    someone = getattr(tenant, who)
    data = {"resolution": "accepted_risk", "reason": "Seasonal"}
    response = tenant.client(someone).post(url("escalations:workstream_close", tenant, workstream_id=episode.pk), data)
    assert response.status_code == 403 and denied(tenant, someone) == 1
    episode.refresh_from_db()
    assert episode.is_open


def test_an_executive_closes_with_a_resolution_and_a_reason(tenant, episode):
    client = tenant.client(tenant.executive)
    post = url("escalations:workstream_close", tenant, workstream_id=episode.pk)
    response = client.post(post, {"resolution": "recovered", "reason": "It is fine"})
    assert response.status_code == 422 and "Select a valid choice" in response.content.decode()
    response = client.post(post, {"resolution": "accepted_risk", "reason": ""})
    assert response.status_code == 422
    episode.refresh_from_db()
    assert episode.is_open
    response = htmx(client, post, {"resolution": "accepted_risk", "reason": "Seasonal dip"})
    html = response.content.decode()
    assert response.status_code == 200 and "Workstream closed" in html and "Closed: accepted risk" in html
    episode.refresh_from_db()
    assert (episode.resolution, episode.resolution_reason, episode.closed_by) == (
        "accepted_risk",
        "Seasonal dip",
        tenant.executive.user,
    )
    assert 'id="close"' not in html and not Task.objects.filter(state__in=["open", "acknowledged"]).exists()


def test_the_page_shows_state_tasks_timeline_and_earlier_paths(tenant, episode):
    first = file_path(tenant, episode)
    mitigation_path_review(path=first, by=tenant.executive, approve=False, comment="Needs owners")
    second = file_path(tenant, episode)
    page = tenant.client(tenant.executive).get(url("escalations:workstream_detail", tenant, workstream_id=episode.pk))
    html = page.content.decode()
    told = timezone.localtime(Task.objects.get(kind="escalation").created_at, tenant.org.tzinfo)
    told_on = f"{told:%a} {told.day} {told:%b}"
    assert f"First round, level 1 of 2: {tenant.target.user.name} told on {told_on}" in html
    assert "(Europe/Berlin)" in html
    assert f"{tenant.target.user.name}</span> must approve or reject {tenant.lead.user.name}&#x27;s path" in html
    local = timezone.localtime(episode.next_escalation_at, tenant.org.tzinfo)
    assert local.strftime("%H:%M") in html  # the next step in the organization's time
    assert "Earlier paths" in html and "Needs owners" in html and "Awaiting review</span>" in html
    assert "Escalated to level 1 (pass 1)" in html  # the timeline
    assert f"/paths/{second.pk}/review/" in html


# --- inbox -------------------------------------------------------------------------------------------


def _task(tenant: Tenant, assignee: Membership, kind: str, due, key: str, **extra) -> Task:
    return Task.objects.create(
        organization=tenant.org,
        kind=kind,
        assignee=assignee,
        kpi=tenant.kpi,
        due_at=due,
        dedup_key=key,
        **extra,
    )


def test_the_inbox_lists_overdue_tasks_first_then_by_due_time(tenant, episode):
    now = timezone.now()
    other = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, name="Backlog")
    later = _task(tenant, tenant.target, "mitigation", now + 5 * DAY, "later")
    Task.objects.filter(pk=later.pk).update(kpi=other)
    _task(tenant, tenant.target, "data_freshness", now - 2 * DAY, "overdue")
    _task(tenant, tenant.target, "mitigation", now, "done", state="done")
    _task(tenant, tenant.member, "mitigation", now - DAY, "someone else's")
    html = tenant.client(tenant.target).get(url("escalations:task_inbox", tenant)).content.decode()
    assert html.count('<li id="task-') == 3  # the done task and the member's task are not listed
    assert html.index("Restore data") < html.index("Escalation</span>") < html.index("Backlog")
    assert "2 d overdue" in html and "due-overdue" in html
    assert 'id="nav-inbox-count" class="nav-count">3<' in html


def test_an_escalation_task_is_acknowledged_in_place(tenant, episode):
    task = Task.objects.get(kind="escalation")
    client = tenant.client(tenant.target)
    assert "Acknowledge</button>" in client.get(url("escalations:task_inbox", tenant)).content.decode()
    response = htmx(client, url("escalations:task_acknowledge", tenant, task_id=task.pk), {"next": "inbox"})
    html = response.content.decode()
    assert (
        response.status_code == 200
        and "<html" not in html
        and html.lstrip().startswith(f'<li id="decision-k{task.kpi_id}"')
    )
    assert "Acknowledged" in html and "Acknowledge</button>" not in html and 'hx-swap-oob="true"' in html
    task.refresh_from_db()
    assert task.state == "acknowledged"
    # Acknowledging twice says so instead of failing.
    html = htmx(
        client, url("escalations:task_acknowledge", tenant, task_id=task.pk), {"next": "inbox"}
    ).content.decode()
    assert "This task is acknowledged." in html


def test_the_inbox_offers_the_review_once_a_path_waits(tenant, episode):
    file_path(tenant, episode)
    html = tenant.client(tenant.target).get(url("escalations:task_inbox", tenant)).content.decode()
    assert "Approve or reject" in html and "mitigation path." in html and "#review" in html


def test_an_overdue_action_is_marked_done_from_the_inbox(tenant, episode):
    action = file_path(tenant, episode).actions.get()
    task = _task(tenant, tenant.member, "action", timezone.now() - HOUR, "action", action=action, workstream=episode)
    client = tenant.client(tenant.member)
    assert "Mark done" in client.get(url("escalations:task_inbox", tenant)).content.decode()
    response = htmx(
        client, url("escalations:action_update", tenant, action_id=action.pk), {"done": "1", "next": "inbox"}
    )
    html = response.content.decode()
    assert response.status_code == 200 and f'id="task-{task.pk}"' in html and "Action marked done." in html
    task.refresh_from_db()
    action.refresh_from_db()
    assert task.state == "done" and action.done_at is not None


def test_the_decision_queue_has_one_row_per_kpi_saying_what_is_asked(tenant, episode):
    """The target's escalation and an escalated review of the same KPI are one row, with the KPI's status, value
    against target and owner; the headline is the ask in words, the level and pass are detail."""
    now = timezone.now()
    review = DependencyReview.objects.create(
        organization=tenant.org, kpi=tenant.kpi, opened_at=now - 5 * DAY, due_at=now - 3 * DAY
    )
    _task(tenant, tenant.target, "escalation", now + DAY, "review-esc", review=review, level=1, escalation_pass=1)
    other = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, name="Backlog")
    fresh = _task(tenant, tenant.target, "data_freshness", now + DAY, "fresh")
    Task.objects.filter(pk=fresh.pk).update(kpi=other)

    rows = decision_queue(membership=tenant.target)
    assert [row.kpi for row in rows] == [tenant.kpi, other]  # the review was due 3 days ago: most overdue first
    first = rows[0]
    assert len(first.tasks) == 2 and first.due_at == review.due_at
    owner = tenant.lead.user.name
    assert first.asks == [
        f"{owner} has filed no mitigation path yet.",
        f"{owner} has not answered the dependency review of this KPI: answer it here or push for it.",
    ]
    html = tenant.client(tenant.target).get(url("escalations:task_inbox", tenant)).content.decode()
    assert html.count('<li id="decision-') == 2
    row = html[html.index(f'id="decision-k{tenant.kpi.pk}"') : html.index('id="decision-k' + str(other.pk))]
    assert "3 d overdue" in row and f"Owner {owner}" in row and "status-" in row and "/ target" in row
    assert row.index(f"{owner} has filed no mitigation path yet.") < row.index("first round, level 1")


def test_an_executive_approves_a_path_in_place_in_the_queue(tenant, episode):
    path = file_path(tenant, episode)
    client = tenant.client(tenant.target)
    review = url("escalations:mitigation_path_review", tenant, path_id=path.pk)
    refused = htmx(client, review, {"decision": "approve", "reason": "", "next": "inbox"}).content.decode()
    path.refresh_from_db()
    assert path.state == "submitted" and 'role="alert"' in refused and f'id="decision-k{tenant.kpi.pk}"' in refused

    response = htmx(client, review, {"decision": "approve", "reason": "Sound plan.", "next": "inbox"})
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith(f'<li id="decision-k{tenant.kpi.pk}"')
    assert "Mitigation path approved: escalation stops." in html and 'hx-swap-oob="true"' in html
    path.refresh_from_db()
    assert path.state == "approved" and path.reviewed_by == tenant.target.user


def test_a_dependency_review_task_is_listed_with_its_workstream(tenant, episode):
    _task(tenant, tenant.member, "dependency_review", timezone.now() + DAY, "review", workstream=episode)
    html = tenant.client(tenant.member).get(url("escalations:task_inbox", tenant)).content.decode()
    assert "Dependency review" in html and "Say whether an upstream change affects this KPI." in html
    assert f'href="{url("escalations:workstream_detail", tenant, workstream_id=episode.pk)}">Open workstream' in html


def test_an_empty_inbox_says_so(tenant):
    html = tenant.client(tenant.member).get(url("escalations:task_inbox", tenant)).content.decode()
    assert "Nothing waits for you" in html


def test_the_inbox_needs_a_constant_number_of_queries(tenant, episode, django_assert_max_num_queries):
    now = timezone.now()
    for i in range(30):
        kpi = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead)
        ws = Workstream.objects.create(organization=tenant.org, kpi=kpi, severity="at_risk", opened_at=now)
        Task.objects.create(
            organization=tenant.org,
            kind="escalation",
            assignee=tenant.target,
            kpi=kpi,
            workstream=ws,
            due_at=now + i * HOUR,
            dedup_key=f"many{i}",
        )
    client = tenant.client(tenant.target)
    with django_assert_max_num_queries(INBOX_QUERIES):
        response = client.get(url("escalations:task_inbox", tenant))
    assert response.content.decode().count('<li id="task-') == 31


# --- my work -----------------------------------------------------------------------------------------


def test_my_work_shows_the_open_tasks(tenant, episode):
    html = tenant.client(tenant.lead).get(url("scorecards:my_work", tenant)).content.decode()
    assert "File a mitigation path" in html and url("escalations:task_inbox", tenant) in html
    assert "No open task." not in html


def test_my_work_without_tasks_says_what_would_appear_there(tenant):
    html = tenant.client(tenant.member).get(url("scorecards:my_work", tenant)).content.decode()
    assert "No open task. When a KPI you own goes off track" in html
    assert url("escalations:task_inbox", tenant) in html


# --- notifications --------------------------------------------------------------------------------


def test_the_badge_counts_unread_notifications_and_marking_read_lowers_it(tenant, episode):
    client = tenant.client(tenant.target)
    unread = Notification.objects.filter(recipient=tenant.target, channel="in_app", read_at=None)
    assert unread.count() == 1  # the escalation
    Notification.objects.create(
        organization=tenant.org,
        recipient=tenant.target,
        kind="resolved",
        channel="in_app",
        dedup_key="extra",
        subject="Something ended",
        body="Over",
    )
    html = client.get(url("escalations:notification_list", tenant)).content.decode()
    assert 'id="nav-unread-count" class="nav-count">2<' in html and html.count("notification-unread") == 2
    first = unread.order_by("created_at").first()
    response = htmx(client, url("escalations:notification_read", tenant, notification_id=first.pk))
    html = response.content.decode()
    assert response.status_code == 200 and "notification-unread" not in html
    assert 'id="nav-unread-count" class="nav-count"' in html and ">1<" in html  # the badge, out of band
    response = client.post(url("escalations:notification_read_all", tenant))
    assert response.status_code == 302 and unread.count() == 0
    html = client.get(url("escalations:notification_list", tenant)).content.decode()
    assert 'id="nav-unread-count" class="nav-count nav-count-empty"' in html


def test_mark_all_read_with_htmx_swaps_the_list_and_the_badge(tenant, episode):
    response = htmx(tenant.client(tenant.target), url("escalations:notification_read_all", tenant))
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and 'id="notification-list"' in html
    assert "notification-unread" not in html and 'id="nav-unread-count" class="nav-count nav-count-empty"' in html
    assert not Notification.objects.filter(recipient=tenant.target, read_at=None).exists()


def test_a_notification_of_someone_else_cannot_be_marked_read(tenant, episode):
    theirs = Notification.objects.filter(recipient=tenant.target).first()
    response = tenant.client(tenant.member).post(
        url("escalations:notification_read", tenant, notification_id=theirs.pk)
    )
    assert response.status_code == 403 and denied(tenant, tenant.member) == 1
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_the_notifications_page_links_to_the_workstream_and_shows_an_empty_state(tenant, episode):
    html = tenant.client(tenant.target).get(url("escalations:notification_list", tenant)).content.decode()
    assert f'href="{url("escalations:workstream_detail", tenant, workstream_id=episode.pk)}"' in html
    assert (
        "No notifications"
        in tenant.client(tenant.admin).get(url("escalations:notification_list", tenant)).content.decode()
    )


def test_switching_a_channel_off_stops_that_kind_on_that_channel(tenant, episode):
    client = tenant.client(tenant.lead)
    page = client.get(url("escalations:notification_settings", tenant)).content.decode()
    assert 'name="path_approved__email"' in page and "checked" in page
    # Everything stays on but the email about an approved path.
    form = {name: "on" for name in re.findall(r'name="(\w+__\w+)"', page) if name != "path_approved__email"}
    response = client.post(url("escalations:notification_settings", tenant), form)
    assert response.status_code == 302
    assert set(NotificationPreference.objects.filter(enabled=False).values_list("kind", "channel")) == {
        ("path_approved", "email")
    }
    assert AuditEvent.objects.filter(verb="notification_preferences.updated", actor=tenant.lead.user).count() == 1
    mitigation_path_review(path=file_path(tenant, episode), by=tenant.executive, approve=True, comment="Credible plan.")
    sent = Notification.objects.filter(recipient=tenant.lead, kind="path_approved")
    assert list(sent.values_list("channel", flat=True)) == ["in_app"]
    page = client.get(url("escalations:notification_settings", tenant)).content.decode()
    assert 'name="path_approved__email" id="id_path_approved__email"' in page  # shown unchecked


# --- lists and the KPI pages ---------------------------------------------------------------------------


def test_the_workstream_list_shows_open_ones_first_and_filters(tenant, episode):
    file_path(tenant, episode)
    now = timezone.now()
    resolved_kpi = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, name="Old episode")
    Workstream.objects.create(
        organization=tenant.org,
        kpi=resolved_kpi,
        severity="at_risk",
        opened_at=now - 9 * DAY,
        resolved_at=now - 8 * DAY,
        resolution="recovered",
    )
    client = tenant.client(tenant.member)
    html = client.get(url("escalations:workstream_list", tenant)).content.decode()
    assert "Throughput" in html and "Old episode" not in html and "Awaiting review" in html
    assert "First round, level 1 of 2" in html
    html = client.get(url("escalations:workstream_list", tenant), {"state": "all"}).content.decode()
    assert html.index("Throughput") < html.index("Old episode")
    response = client.get(url("escalations:workstream_list", tenant), {"state": "resolved"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html and "Old episode" in html and "Throughput" not in html
    html = client.get(url("escalations:workstream_list", tenant), {"kind": "data_freshness"}).content.decode()
    assert "No workstream matches" in html


def test_the_workstream_list_pages_keep_the_filters(tenant, monkeypatch):
    monkeypatch.setattr("escalations.workstreams.views.PAGE_SIZE", 2)
    now = timezone.now()
    for i in range(5):
        kpi = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, name=f"Episode {i}")
        Workstream.objects.create(organization=tenant.org, kpi=kpi, severity="at_risk", opened_at=now - i * DAY)
    client = tenant.client(tenant.member)
    html = client.get(url("escalations:workstream_list", tenant), {"state": "open"}).content.decode()
    assert "Page 1 of 3" in html and "?state=open&amp;page=2" in html and ">Previous<" not in html
    html = client.get(url("escalations:workstream_list", tenant), {"state": "open", "page": 3}).content.decode()
    assert "Page 3 of 3" in html and "?state=open&amp;page=2" in html and ">Next<" not in html


def test_the_workstream_list_has_an_empty_state(tenant):
    html = tenant.client(tenant.member).get(url("escalations:workstream_list", tenant)).content.decode()
    assert "No open workstream" in html


def test_the_workstream_list_needs_a_constant_number_of_queries(tenant, django_assert_max_num_queries):
    now = timezone.now()
    for i in range(40):
        kpi = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead)
        ws = Workstream.objects.create(
            organization=tenant.org, kpi=kpi, severity="off_track", opened_at=now - i * HOUR, level=1
        )
        MitigationPath.objects.create(
            organization=tenant.org,
            workstream=ws,
            root_cause="x",
            expected_recovery=now.date(),
            filed_by=tenant.lead.user,
        )
    client = tenant.client(tenant.member)
    with django_assert_max_num_queries(WORKSTREAM_LIST_QUERIES):
        response = client.get(url("escalations:workstream_list", tenant))
    assert response.content.decode().count("Awaiting review") == 40


def test_the_notifications_page_needs_a_constant_number_of_queries(tenant, episode, django_assert_max_num_queries):
    Notification.objects.bulk_create(
        Notification(
            organization=tenant.org,
            recipient=tenant.target,
            kind="escalation",
            channel="in_app",
            dedup_key=f"n{i}",
            subject=f"Message {i}",
            body="Body",
            workstream=episode,
            url=f"/o/acme/workstreams/{episode.pk}/",
        )
        for i in range(40)
    )
    client = tenant.client(tenant.target)
    with django_assert_max_num_queries(NOTIFICATION_LIST_QUERIES):
        response = client.get(url("escalations:notification_list", tenant))
    assert response.content.decode().count('class="notification ') == 41


def test_the_page_leads_with_the_overdue_filing_and_folds_finished_tasks(tenant, episode):
    Task.objects.filter(kind="escalation").update(state="cancelled")
    html = tenant.client(tenant.lead).get(url("escalations:workstream_detail", tenant, workstream_id=episode.pk))
    html = html.content.decode()
    head = html[html.index('id="next"') : html.index('id="file-path"')]
    assert f"{tenant.lead.user.name}</span> must file the mitigation path" in head and "overdue" in head
    who = html[html.index('id="tasks"') : html.index('id="close"') if 'id="close"' in html else None]
    assert "Cancelled" not in who and "File a mitigation path" in who  # the lead's own task, still open
    timeline = html[html.index('id="timeline"') : html.index('id="tasks"')]
    assert "Finished and cancelled tasks" in timeline and "(first round, level 1)" in timeline


def test_the_close_form_preselects_no_resolution(tenant, episode):
    html = tenant.client(tenant.executive).get(url("escalations:workstream_detail", tenant, workstream_id=episode.pk))
    form = html.content.decode().split('id="close"')[1]
    assert '<option value="" selected>Choose how it ends</option>' in form
    response = tenant.client(tenant.executive).post(
        url("escalations:workstream_close", tenant, workstream_id=episode.pk), {"resolution": "", "reason": "x"}
    )
    episode.refresh_from_db()
    assert response.status_code == 422 and episode.is_open


def test_the_kpi_page_shows_the_open_workstream(tenant, episode):
    html = tenant.client(tenant.member).get(url("scorecards:kpi_detail", tenant, kpi_id=tenant.kpi.pk)).content.decode()
    assert url("escalations:workstream_detail", tenant, workstream_id=episode.pk) in html
    assert "Escalated to level 1" in html


def test_the_scorecard_marks_kpis_with_an_open_workstream(tenant, episode, django_assert_max_num_queries):
    now = timezone.now()
    for _ in range(30):
        kpi = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead)
        Workstream.objects.create(organization=tenant.org, kpi=kpi, severity="off_track", opened_at=now)
    quiet = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, name="Quiet")
    Workstream.objects.create(
        organization=tenant.org, kpi=quiet, severity="at_risk", opened_at=now, resolved_at=now, resolution="recovered"
    )
    client = tenant.client(tenant.member)
    with django_assert_max_num_queries(15):  # the scorecard's pinned budget (tests/scorecards/test_kpi_pages.py)
        html = client.get(url("scorecards:kpi_list", tenant)).content.decode()
    assert html.count('class="ws-chip ws-chip-none"') == 31
    assert url("escalations:workstream_detail", tenant, workstream_id=episode.pk) in html


def test_the_workstream_chip_says_where_the_mitigation_stands(tenant, episode, django_assert_num_queries):
    """No path yet, awaiting review, approved, rejected, actions overdue: one annotated query, whatever the rows."""

    def chips() -> dict[str, str | None]:
        with django_assert_num_queries(1):
            return {k.name: k.workstream_state for k in with_workstream_state(Kpi.objects.for_org(tenant.org))}

    assert chips()[tenant.kpi.name] == "none"
    path = file_path(tenant, episode)
    assert chips()[tenant.kpi.name] == "submitted"
    mitigation_path_review(path=path, by=tenant.executive, approve=True, comment="Go")
    assert chips()[tenant.kpi.name] == "approved"
    MitigationAction.objects.filter(path=path).update(overdue_at=timezone.now())
    states = chips()
    assert states[tenant.kpi.name] == "overdue"
    quiet = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, name="Quiet")
    assert chips()[quiet.name] is None  # no open episode, no chip
    MitigationAction.objects.filter(path=path).update(done_at=timezone.now())
    assert chips()[tenant.kpi.name] == "approved"  # done actions are no longer overdue
    second = file_path(tenant, episode)
    mitigation_path_review(path=second, by=tenant.executive, approve=False, comment="No owners")
    assert chips()[tenant.kpi.name] == "rejected"
    html = tenant.client(tenant.member).get(url("scorecards:kpi_list", tenant)).content.decode()
    assert 'class="ws-chip ws-chip-rejected"' in html and ">Path rejected</a>" in html


# session, user, membership, the switcher, the navigation's counts, the tasks: none grows with the rows
INBOX_QUERIES = 9  # + what happens next in the escalating episodes: their workstreams, filers, a named group
WORKSTREAM_LIST_QUERIES = 9  # + the page count, the open/resolved counts, the scorecards (whose KPIs a member sees)
NOTIFICATION_LIST_QUERIES = 7  # + the page count
