"""Four eyes (SEMANTICS.md section 3): nobody decides on their own work, whichever page, htmx partial or API
endpoint they use; every decision is a Decision row with its reason, in the log, on the KPI and workstream pages
and in the API; only a one-person organization self-approves, in red; expected recovery dates lie after today."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from django.apps import apps
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from escalations.engine import authority as deciding
from escalations.models import (
    Decision,
    DependencyReview,
    DependencyReviewSignal,
    DependencySignal,
    MitigationPath,
    Notification,
    Task,
    Workstream,
)
from escalations.reporting import health
from escalations.workstreams.services import ActionDraft, mitigation_path_file
from governance.access import REASON_REQUIRED, decision_authority
from governance.models import AuditEvent, Membership, Role
from governance.services.api_tokens import api_token_create
from scorecards.models import Kpi, OwnershipTransfer
from tests.conftest import Tenant
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory

DAY = timedelta(days=1)


def today(tenant: Tenant) -> date:
    return timezone.localdate(timezone=tenant.org.tzinfo)


def url(name: str, tenant: Tenant, **kwargs) -> str:
    return reverse(name, kwargs={"org_slug": tenant.org.slug, **kwargs})


def api(token: str, method: str, path: str, body: dict | None = None):
    return getattr(Client(), method)(
        f"/api/v1/{path}",
        data=json.dumps(body) if body is not None else None,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@dataclass
class Case:
    """The issue's case: the KPI's owner leads its team, is an executive and was escalated to; another executive
    filed the episode's path; a third executive, with no interest, may decide."""

    tenant: Tenant
    owner: Membership
    filer: Membership
    ws: Workstream
    path: MitigationPath
    review: DependencyReview
    review_task: Task  # the downstream owner's
    behalf_task: Task  # the review's escalation to the upstream KPI's owner (the filer)
    tokens: dict[str, str]


@pytest.fixture
def case(tenant: Tenant) -> Case:
    owner = tenant.lead
    Membership.objects.filter(pk=owner.pk).update(role=Role.EXECUTIVE)
    owner.refresh_from_db()
    filer = MembershipFactory(organization=tenant.org, role=Role.EXECUTIVE, user__email="filer@acme.test")
    now = timezone.now()
    ws = Workstream.objects.create(organization=tenant.org, kpi=tenant.kpi, severity="off_track", opened_at=now - DAY)
    path = MitigationPath.objects.create(
        organization=tenant.org,
        workstream=ws,
        root_cause="Supplier outage",
        expected_recovery=today(tenant) + 14 * DAY,
        filed_by=filer.user,
    )
    Task.objects.create(
        organization=tenant.org,
        kind=Task.Kind.ESCALATION,
        assignee=owner,
        kpi=tenant.kpi,
        workstream=ws,
        due_at=now + DAY,
        level=1,
        escalation_pass=1,
        dedup_key="acme:escalated-to-the-owner",
    )
    # A dependency review of the KPI, caused by an upstream KPI the filer owns, escalated to the filer.
    upstream = KpiFactory(organization=tenant.org, team=tenant.team, owner=filer, key="ops.backlog", name="Backlog")
    signal = DependencySignal.objects.create(
        organization=tenant.org, kpi=upstream, kind="status", at=now, cause="Backlog is off track"
    )
    review_task = Task.objects.create(
        organization=tenant.org,
        kind=Task.Kind.DEPENDENCY_REVIEW,
        assignee=owner,
        kpi=tenant.kpi,
        due_at=now + DAY,
        dedup_key="acme:review",
    )
    review = DependencyReview.objects.create(
        organization=tenant.org, kpi=tenant.kpi, task=review_task, opened_at=now, due_at=now + DAY
    )
    DependencyReviewSignal.objects.create(
        organization=tenant.org, signal=signal, review=review, kpi=tenant.kpi, upstream=upstream, at=now
    )
    behalf_task = Task.objects.create(
        organization=tenant.org,
        kind=Task.Kind.ESCALATION,
        assignee=filer,
        kpi=tenant.kpi,
        review=review,
        due_at=now + DAY,
        level=1,
        escalation_pass=1,
        dedup_key="acme:review-escalated",
    )
    tokens = {
        name: api_token_create(org=tenant.org, actor=None, name=name, membership=who)[1]
        for name, who in (
            ("owner", owner),
            ("filer", filer),
            ("member", tenant.member),
            ("executive", tenant.executive),
        )
    }
    return Case(tenant, owner, filer, ws, path, review, review_task, behalf_task, tokens)


def person(case: Case, who: str) -> Membership:
    return {"owner": case.owner, "filer": case.filer, "member": case.tenant.member}[who]


# --- who is refused, through every door ---------------------------------------------------------------------


def page_post(case: Case, kind: str, who: str, htmx: bool):
    """The page's POST for a decision of `kind` by `who` (as htmx sends it, or a plain form)."""
    t = case.tenant
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    client = t.client(person(case, who))
    if kind == "path_review":
        data = {"decision": "approve", "reason": "My own plan is fine."}
        return client.post(url("escalations:mitigation_path_review", t, path_id=case.path.pk), data, **headers)
    if kind == "workstream_close":
        data = {"resolution": "accepted_risk", "reason": "Done with it."}
        return client.post(url("escalations:workstream_close", t, workstream_id=case.ws.pk), data, **headers)
    if kind == "risk_accept":
        data = {"kind": "risk", "until": str(today(t) + 5 * DAY), "reason": "Seasonal."}
        return client.post(url("escalations:review_decide", t, kpi_id=t.kpi.pk), data, **headers)
    if kind == "target_change":
        data = {"kind": "target", "target_value": "900", "warning": "800", "critical": "600", "reason": "Easier."}
        return client.post(url("escalations:review_decide", t, kpi_id=t.kpi.pk), data, **headers)
    if kind == "transfer_decide":
        data = {"decision": "approve", "note": "Fine by me."}
        return client.post(url("escalations:transfer_decide", t, transfer_id=t.transfer.pk), data, **headers)
    task = case.behalf_task if who == "filer" else case.review_task
    data = {"review": case.review.pk, "impact": "no", "reason": "Nothing to see."}
    return client.post(url("escalations:task_answer", t, task_id=task.pk), data, **headers)


def api_post(case: Case, kind: str, who: str):
    token = case.tokens[who]
    if kind == "path_review":
        return api(token, "post", f"workstreams/{case.ws.pk}/review", {"decision": "approve", "comment": "Mine."})
    if kind == "workstream_close":
        body = {"resolution": "accepted_risk", "reason": "Done with it."}
        return api(token, "post", f"workstreams/{case.ws.pk}/close", body)
    task = case.behalf_task if who == "filer" else case.review_task
    body = {"impact": False, "reason": "Nothing to see.", "kpi": case.tenant.kpi.key}
    return api(token, "post", f"tasks/{task.pk}/answer", body)


def nothing_decided(case: Case) -> bool:
    case.path.refresh_from_db()
    case.ws.refresh_from_db()
    case.review.refresh_from_db()
    transfer = OwnershipTransfer.objects.get(pk=case.tenant.transfer.pk)
    kpi = Kpi.objects.get(pk=case.tenant.kpi.pk)
    return (
        not Decision.objects.exists()
        and case.path.state == "submitted"
        and case.ws.is_open
        and case.ws.next_escalation_at is None
        and case.review.is_open
        and transfer.state == "pending"
        and kpi.target_value == case.tenant.kpi.target_value
    )


REFUSED = [
    ("path_review", "owner"),
    ("path_review", "filer"),
    ("path_review", "member"),
    ("workstream_close", "owner"),
    ("workstream_close", "filer"),
    ("workstream_close", "member"),
    ("risk_accept", "owner"),
    ("risk_accept", "filer"),
    ("risk_accept", "member"),
    ("target_change", "owner"),
    ("target_change", "member"),
    ("transfer_decide", "owner"),  # the requester (the fixture's transfer was requested by the owner)
    ("transfer_decide", "member"),
    ("review_no_impact", "filer"),  # the upstream KPI's owner, on the downstream owner's behalf
    ("review_no_impact", "member"),
]


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize(("kind", "who"), REFUSED)
def test_it_refuses_a_decision_on_ones_own_work_or_without_authority_on_the_page(case, kind, who, htmx):
    response = page_post(case, kind, who, htmx)
    assert response.status_code == 403
    assert nothing_decided(case)
    assert AuditEvent.objects.filter(actor=person(case, who).user, verb="security.permission_denied").exists()


@pytest.mark.parametrize(
    ("kind", "who"), [(k, w) for k, w in REFUSED if k in ("path_review", "workstream_close", "review_no_impact")]
)
def test_it_refuses_a_decision_on_ones_own_work_or_without_authority_through_the_api(case, kind, who):
    response = api_post(case, kind, who)
    assert response.status_code == 403, response.content
    assert nothing_decided(case)


def test_the_owner_who_was_escalated_to_sees_no_review_or_close_form(case):
    page = case.tenant.client(case.owner).get(
        url("escalations:workstream_detail", case.tenant, workstream_id=case.ws.pk)
    )
    html = page.content.decode()
    assert 'id="review"' not in html and 'id="close"' not in html
    decider = case.tenant.client(case.tenant.executive).get(
        url("escalations:workstream_detail", case.tenant, workstream_id=case.ws.pk)
    )
    assert 'id="review"' in decider.content.decode() and 'id="close"' in decider.content.decode()


def test_the_requester_sees_no_approve_button_on_the_kpi_page(case):
    t = case.tenant
    requester = t.client(case.owner).get(url("scorecards:kpi_detail", t, kpi_id=t.kpi.pk)).content.decode()
    admin = t.client(t.admin).get(url("scorecards:kpi_detail", t, kpi_id=t.kpi.pk)).content.decode()
    assert 'value="approve"' not in requester and 'value="approve"' in admin


def test_the_owner_is_offered_no_decision_on_their_own_kpi_on_the_agenda(case):
    t = case.tenant
    own = t.client(case.owner).get(url("escalations:review_agenda", t)).content.decode()
    other = t.client(t.executive).get(url("escalations:review_agenda", t)).content.decode()
    assert f'id="d{t.kpi.pk}-path-reason"' not in own and f'id="d{t.kpi.pk}-risk-reason"' not in own
    assert f'id="d{t.kpi.pk}-path-reason"' in other and f'id="d{t.kpi.pk}-risk-reason"' in other


def test_the_authority_rule_reads_plain_facts(tenant):
    owner, other = tenant.executive, MembershipFactory(organization=tenant.org, role=Role.EXECUTIVE)
    interested = {owner.user_id}
    assert not decision_authority(kind="workstream_close", by=owner, interested=interested)
    assert decision_authority(kind="workstream_close", by=other, interested=interested)
    assert not decision_authority(kind="workstream_close", by=tenant.admin)  # executives close
    assert decision_authority(kind="path_review", by=tenant.member, also={tenant.member.pk})  # escalated to
    Membership.objects.filter(pk=other.pk).update(is_active=False)
    solo = decision_authority(kind="workstream_close", by=owner, interested=interested)
    assert solo and solo.self_approved  # nobody else may close: allowed, and said so


# --- every decision is a row, wherever it was taken -----------------------------------------------------------


def test_a_decision_taken_on_each_page_is_in_the_log_on_the_kpi_page_and_in_the_api(case):
    t = case.tenant
    executive = t.client(t.executive)
    ws_url = url("escalations:workstream_detail", t, workstream_id=case.ws.pk)
    approved = executive.post(
        url("escalations:mitigation_path_review", t, path_id=case.path.pk),
        {"decision": "approve", "reason": "Second supplier is credible."},
        HTTP_HX_REQUEST="true",
    )
    assert approved.status_code == 200 and ws_url
    agenda = url("escalations:review_decide", t, kpi_id=t.kpi.pk)
    executive.post(agenda, {"kind": "risk", "until": str(today(t) + 5 * DAY), "reason": "Peak season."})
    target = {"kind": "target", "target_value": "1100", "warning": "900", "critical": "700", "reason": "New plan."}
    executive.post(agenda, target)
    closed = executive.post(
        url("escalations:workstream_close", t, workstream_id=case.ws.pk),
        {"resolution": "no_longer_relevant", "reason": "Product retired."},
    )
    assert closed.status_code == 302
    t.client(t.admin).post(
        url("escalations:transfer_decide", t, transfer_id=t.transfer.pk),
        {"decision": "reject", "note": "Not this quarter."},
    )
    answered = t.client(case.owner).post(
        url("escalations:task_answer", t, task_id=case.review_task.pk),
        {"review": case.review.pk, "impact": "no", "reason": "Backlog does not feed throughput."},
    )
    assert answered.status_code == 302
    kinds = {
        "path_approved",
        "risk_accepted",
        "target_changed",
        "workstream_closed",
        "transfer_decided",
        "review_no_impact",
    }
    assert set(Decision.objects.values_list("kind", flat=True)) == kinds
    assert not Decision.objects.filter(self_approved=True).exists()
    log = executive.get(url("escalations:decision_log", t)).content.decode()
    for reason in ("Second supplier is credible.", "Product retired.", "Not this quarter.", "Backlog does not"):
        assert reason in log
    panel = executive.get(url("escalations:kpi_decisions", t, kpi_id=t.kpi.pk), HTTP_HX_REQUEST="true").content.decode()
    assert "Closed the workstream" in panel and "Decided an ownership transfer" in panel
    episode = executive.get(url("escalations:workstream_decisions", t, workstream_id=case.ws.pk)).content.decode()
    assert "Approved the mitigation path" in episode and "Product retired." in episode
    listed = api(case.tokens["member"], "get", "decisions").json()
    assert {d["kind"] for d in listed} == kinds
    closing = next(d for d in listed if d["kind"] == "workstream_closed")
    assert closing == {
        "id": closing["id"],
        "kind": "workstream_closed",
        "kpi": t.kpi.key,
        "workstream": case.ws.pk,
        "decided_by": t.executive.user.email,
        "reason": "Product retired.",
        "decided_at": closing["decided_at"],
        "self_approved": False,
    }


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_an_approval_on_the_workstream_page_needs_a_reason(case, htmx):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = case.tenant.client(case.tenant.executive).post(
        url("escalations:mitigation_path_review", case.tenant, path_id=case.path.pk), {"decision": "approve"}, **headers
    )
    assert REASON_REQUIRED in response.content.decode()
    assert nothing_decided(case)


def test_an_approval_through_the_api_needs_a_reason(case):
    response = api(case.tokens["executive"], "post", f"workstreams/{case.ws.pk}/review", {"decision": "approve"})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "reason", "message": REASON_REQUIRED}]
    assert nothing_decided(case)


def test_a_transfer_needs_a_reason_on_the_kpi_page(case):
    t = case.tenant
    t.client(t.admin).post(
        url("escalations:transfer_decide", t, transfer_id=t.transfer.pk), {"decision": "approve"}, follow=True
    )
    assert nothing_decided(case)


def test_the_decisions_api_filters_pages_and_sees_only_its_organization(case, stranger_tenant, settings):
    t = case.tenant
    deciding.decision_record(
        kind=Decision.Kind.WORKSTREAM_CLOSED,
        kpi=t.kpi,
        by=t.executive,
        authority=decision_authority(kind="workstream_close", by=t.executive),
        reason="Old decision.",
        workstream=case.ws,
        now=timezone.now() - 10 * DAY,
    )
    other = KpiFactory(organization=t.org, team=t.team, owner=t.member, key="ops.other")
    for n in range(3):
        deciding.decision_record(
            kind=Decision.Kind.TARGET_CHANGED,
            kpi=other,
            by=t.executive,
            authority=decision_authority(kind="target_change", by=t.executive),
            reason=f"Target {n}.",
        )
    token = case.tokens["member"]
    assert len(api(token, "get", "decisions").json()) == 4
    assert [d["reason"] for d in api(token, "get", f"decisions?kpi={t.kpi.key}").json()] == ["Old decision."]
    assert len(api(token, "get", "decisions?kind=target_changed").json()) == 3
    since = (timezone.now() - DAY).isoformat().replace("+00:00", "Z")
    assert len(api(token, "get", f"decisions?since={since}").json()) == 3
    assert api(token, "get", "decisions?kind=approve_path").status_code == 422
    settings.API_PAGE_SIZE = 2
    first = api(token, "get", "decisions")
    assert len(first.json()) == 2 and first["X-Total-Count"] == "4" and 'rel="next"' in first["Link"]
    assert api(stranger_tenant.personal_token, "get", "decisions").json() == []
    assert "/api/v1/decisions" in api(token, "get", "openapi.json").json()["paths"]


# --- the one-person organization ----------------------------------------------------------------------------


def test_in_a_one_person_organization_the_owner_decides_self_approved_in_red_and_counted(db):
    org = OrganizationFactory(slug="solo", name="Solo")
    me = MembershipFactory(organization=org, role=Role.ADMIN, user__email="me@solo.test")
    kpi = KpiFactory(organization=org, team=TeamFactory(organization=org), owner=me, key="solo.sales")
    ws = Workstream.objects.create(organization=org, kpi=kpi, severity="off_track", opened_at=timezone.now() - DAY)
    path = MitigationPath.objects.create(
        organization=org,
        workstream=ws,
        root_cause="Nobody else to ask",
        expected_recovery=timezone.localdate() + 7 * DAY,
        filed_by=me.user,
    )
    client = Client()
    client.force_login(me.user)
    page = client.get(reverse("escalations:workstream_detail", args=[org.slug, ws.pk])).content.decode()
    assert 'id="review"' in page
    client.post(
        reverse("escalations:mitigation_path_review", args=[org.slug, path.pk]),
        {"decision": "approve", "reason": "Go."},
    )
    decision = Decision.objects.get()
    assert (decision.kind, decision.self_approved) == ("path_approved", True)
    log = client.get(reverse("escalations:decision_log", args=[org.slug])).content.decode()
    assert "decision-self" in log and "Self-approved: no second person in the organization" in log
    panel = client.get(
        reverse("escalations:kpi_decisions", args=[org.slug, kpi.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "decision-self" in panel
    _, metrics = health.health_report(org=org, weeks=4)
    counted = next(m for m in metrics if m.key == "self_approved")
    assert counted.headline == "1" and counted.tone == "bad"
    healthy = client.get(reverse("escalations:governance_health", args=[org.slug])).content.decode()
    assert "Self-approved decisions" in healthy and "self-approved decision in 12 weeks" in healthy
    # A second person joins: from now on the owner's own decisions go to them.
    MembershipFactory(organization=org, role=Role.EXECUTIVE)
    assert not deciding.authority("workstream_close", by=me, workstream=ws)


# --- expected recovery dates lie after today, everywhere ------------------------------------------------------


def fresh_episode(tenant: Tenant) -> Workstream:
    kpi = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key="ops.fresh")
    return Workstream.objects.create(organization=tenant.org, kpi=kpi, severity="at_risk", opened_at=timezone.now())


@pytest.mark.parametrize("day", ["today", "past"])
def test_the_owners_form_refuses_an_expected_recovery_that_is_not_after_today(tenant, day):
    ws = fresh_episode(tenant)
    recovery = today(tenant) if day == "today" else date(2020, 1, 1)
    data = {
        "root_cause": "Cause",
        "expected_recovery": str(recovery),
        "actions-TOTAL_FORMS": "1",
        "actions-INITIAL_FORMS": "0",
        "actions-MIN_NUM_FORMS": "0",
        "actions-MAX_NUM_FORMS": "10",
        "actions-0-description": "Act",
        "actions-0-owner": str(tenant.member.pk),
        "actions-0-due": str(today(tenant) + DAY),
    }
    response = tenant.client(tenant.lead).post(
        url("escalations:mitigation_path_file", tenant, workstream_id=ws.pk), data
    )
    assert response.status_code == 422 and deciding.EXPECTED_DAY in response.content.decode()
    assert not MitigationPath.objects.filter(workstream=ws).exists()


def test_the_api_refuses_an_expected_recovery_in_the_past(tenant):
    ws = fresh_episode(tenant)
    token = api_token_create(org=tenant.org, actor=None, name="lead", membership=tenant.lead)[1]
    body = {
        "root_cause": "Cause",
        "expected_recovery": "2020-01-01",
        "actions": [{"description": "Act", "owner": tenant.member.user.email, "due": str(today(tenant) + DAY)}],
    }
    response = api(token, "post", f"workstreams/{ws.pk}/mitigation", body)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "expected_recovery", "message": deciding.EXPECTED_DAY}]


def test_the_executives_approval_refuses_an_expect_on_track_by_in_the_past(case):
    t = case.tenant
    response = t.client(t.executive).post(
        url("escalations:review_decide", t, kpi_id=t.kpi.pk),
        {"kind": "path", "decision": "approve", "reason": "Fine.", "expected_by": "2020-01-01"},
        HTTP_HX_REQUEST="true",
    )
    assert deciding.EXPECTED_DAY in response.content.decode()
    assert nothing_decided(case)


# --- decisions taken before every decision was logged -----------------------------------------------------------


def test_the_migration_logs_earlier_approvals_closings_transfers_and_no_impact_answers(case):
    from importlib import import_module

    migration = import_module("escalations.migrations.0009_decision_kinds_and_self_approval")
    t, now = case.tenant, timezone.now()
    MitigationPath.objects.filter(pk=case.path.pk).update(
        state="approved", reviewed_by=t.executive.user, reviewed_at=now
    )
    Workstream.objects.filter(pk=case.ws.pk).update(
        resolved_at=now, resolution="accepted_risk", resolution_reason="Seasonal", closed_by=t.executive.user
    )
    OwnershipTransfer.objects.filter(pk=t.transfer.pk).update(
        state="rejected", decided_by=t.admin.user, decided_at=now, decision_note=""
    )
    DependencyReview.objects.filter(pk=case.review.pk).update(
        answer="no_impact", answer_reason="Unrelated", answered_at=now, answered_by=case.owner.user
    )
    migration.forwards(apps, None)
    migration.forwards(apps, None)  # twice: nothing logged twice
    logged = {d.kind: d for d in Decision.objects.all()}
    assert len(logged) == Decision.objects.count() == 4
    assert (logged["path_approved"].decided_by, logged["path_approved"].reason) == (
        t.executive.user,
        migration.NO_REASON,
    )
    assert logged["workstream_closed"].reason == "Seasonal"
    assert logged["transfer_decided"].decided_by == t.admin.user
    assert logged["review_no_impact"].reason == "Unrelated"


@pytest.mark.django_db
def test_a_path_filed_by_an_executive_owner_asks_the_other_executives_not_the_owner(tenant):
    owner = tenant.lead
    Membership.objects.filter(pk=owner.pk).update(role=Role.EXECUTIVE)
    owner.refresh_from_db()
    ws = Workstream.objects.create(
        organization=tenant.org, kpi=tenant.kpi, severity="off_track", opened_at=timezone.now() - DAY
    )
    mitigation_path_file(
        workstream=ws,
        by=owner,
        root_cause="Supplier outage",
        expected_recovery=today(tenant) + 14 * DAY,
        actions=[ActionDraft(description="Second supplier", owner=owner, due=today(tenant) + 7 * DAY)],
    )
    asked = set(Notification.objects.filter(kind="path_filed").values_list("recipient_id", flat=True))
    assert tenant.executive.pk in asked
    assert owner.pk not in asked


@pytest.mark.django_db
def test_the_inbox_offers_no_impact_only_to_who_may_answer_it(case):
    """The upstream KPI's owner, escalated to a review their KPI caused, may still say "impact", not "no impact"; the
    downstream owner is offered both."""
    t = case.tenant
    filers = t.client(case.filer).get(url("escalations:task_inbox", t)).content.decode()
    owners = t.client(case.owner).get(url("escalations:task_inbox", t)).content.decode()
    assert 'value="no"> No impact' not in filers and "Four eyes" in filers
    assert 'value="yes" required> Impact' in filers
    assert 'value="no"> No impact' in owners
