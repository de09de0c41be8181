"""Workstream, task and notification endpoints of API.md: a personal token acts as its member."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from escalations.engine.sweeps import advance_escalations, process_status_changes
from escalations.models import EscalationLevel, EscalationPolicy, Task, Workstream
from governance.models import Organization
from governance.services.api_tokens import api_token_create
from governance.services.teams import team_update
from scorecards.models import StatusChange

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def call(token: str, method: str, path: str, body: dict | None = None):
    return getattr(Client(), method)(
        f"/api/v1/{path}",
        data=json.dumps(body) if body is not None else None,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.fixture
def episode(tenant):
    """An open workstream on the tenant's KPI (owner: the lead); the team lead (the member: an owner is never their
    own escalation) is its first escalation level."""
    team_update(team=tenant.team, actor=tenant.admin.user, lead=tenant.member)
    policy = EscalationPolicy.objects.create(
        organization=tenant.org,
        key="standard",
        name="Standard",
        mitigation_due=timedelta(days=2),
        ack_timeout=timedelta(hours=4),
    )
    EscalationLevel.objects.create(
        organization=tenant.org, policy=policy, position=1, targets=["team_lead"], wait=timedelta(days=1)
    )
    Organization.objects.filter(pk=tenant.org.pk).update(default_escalation="standard")
    StatusChange.objects.create(
        organization=tenant.org, kpi=tenant.kpi, old="on_track", new="off_track", value=1, reason="low", changed_at=NOW
    )
    with time_machine.travel(NOW, tick=False):
        process_status_changes(now=NOW)
    tokens = {
        name: api_token_create(org=tenant.org, actor=None, name=name, membership=getattr(tenant, name))[1]
        for name in ("lead", "executive", "member", "admin")
    }
    tenant.tokens = tokens
    tenant.ws = Workstream.objects.get()
    return tenant


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        yield


def path_body(owner="member@acme.test"):
    return {
        "root_cause": "Supplier outage",
        "expected_recovery": "2026-11-20",
        "actions": [{"description": "Second supplier", "owner": owner, "due": "2026-11-10"}],
    }


def test_the_owner_files_a_path_with_a_personal_token(episode):
    response = call(episode.tokens["lead"], "post", f"workstreams/{episode.ws.pk}/mitigation", path_body())
    assert response.status_code == 200, response.content
    mitigation = response.json()["mitigation"]
    assert mitigation["state"] == "submitted"
    assert mitigation["actions"] == [
        {"description": "Second supplier", "owner": "member@acme.test", "due": "2026-11-10", "done": False}
    ]


def test_an_organization_token_does_not_act_for_a_person(episode):
    response = call(episode.token, "post", f"workstreams/{episode.ws.pk}/mitigation", path_body())
    assert response.status_code == 403
    assert "personal token" in response.json()["errors"][0]["message"]


def test_someone_else_cannot_file_and_bad_input_is_422_with_paths(episode):
    assert (
        call(episode.tokens["member"], "post", f"workstreams/{episode.ws.pk}/mitigation", path_body()).status_code
        == 403
    )
    unknown = call(episode.tokens["lead"], "post", f"workstreams/{episode.ws.pk}/mitigation", path_body("x@y.z"))
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [{"path": "actions[0].owner", "message": "unknown member"}]
    no_actions = call(
        episode.tokens["lead"], "post", f"workstreams/{episode.ws.pk}/mitigation", {**path_body(), "actions": []}
    )
    assert no_actions.status_code == 422
    assert no_actions.json()["errors"][0]["path"] == "actions"


def test_a_nul_character_in_any_text_is_422_and_stores_nothing(episode):
    """PostgreSQL text cannot hold one: it would fail the lookup or the save with a server error."""
    body = path_body("member@acme.test\x00")
    body["root_cause"] = "Supplier\x00outage"
    response = call(episode.tokens["lead"], "post", f"workstreams/{episode.ws.pk}/mitigation", body)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": "root_cause", "message": "must not contain a NUL character"},
        # An email is one line: NUL is one of the control characters it refuses.
        {"path": "actions[0].owner", "message": ONE_LINE},
    ]
    close = call(
        episode.tokens["executive"],
        "post",
        f"workstreams/{episode.ws.pk}/close",
        {"resolution": "accepted_risk", "reason": "\x00"},
    )
    assert (close.status_code, close.json()["errors"][0]["path"]) == (422, "reason")
    assert not episode.ws.paths.exists() and Workstream.objects.get().resolved_at is None


ONE_LINE = "must be one line, without line breaks, tabs or other control characters"


def test_a_line_break_in_one_line_text_is_422_and_stores_nothing(episode):
    body = path_body()
    body["actions"][0]["description"] = "Second supplier\r\nBcc: everyone@evil.test"
    body["root_cause"] = "Supplier outage,\nthen a strike"  # several lines are fine here
    response = call(episode.tokens["lead"], "post", f"workstreams/{episode.ws.pk}/mitigation", body)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "actions[0].description", "message": ONE_LINE}]
    assert not episode.ws.paths.exists()


def test_an_executive_reviews_and_closes(episode):
    call(episode.tokens["lead"], "post", f"workstreams/{episode.ws.pk}/mitigation", path_body())
    assert (
        call(
            episode.tokens["member"], "post", f"workstreams/{episode.ws.pk}/review", {"decision": "approve"}
        ).status_code
        == 403
    )
    body = {"decision": "approve", "comment": "Credible plan."}
    approved = call(episode.tokens["executive"], "post", f"workstreams/{episode.ws.pk}/review", body)
    assert approved.json()["mitigation"]["state"] == "approved"
    closed = call(
        episode.tokens["executive"],
        "post",
        f"workstreams/{episode.ws.pk}/close",
        {"resolution": "accepted_risk", "reason": "Seasonal"},
    )
    assert (closed.json()["state"], closed.json()["resolution"]) == ("resolved", "accepted_risk")


def test_lists_filter_by_kpi_state_kind_and_assignee(episode):
    assert [w["id"] for w in call(episode.token, "get", "workstreams?state=open&kpi=ops.throughput").json()] == [
        episode.ws.pk
    ]
    assert call(episode.token, "get", "workstreams?state=resolved").json() == []
    tasks = call(episode.token, "get", "tasks?kind=mitigation&assignee=lead@acme.test").json()
    assert [(t["kind"], t["assignee"], t["kpi"], t["state"], t["level"], t["pass"]) for t in tasks] == [
        ("mitigation", "lead@acme.test", "ops.throughput", "open", 0, 0)
    ]


def test_only_the_assignee_acknowledges(episode):
    with time_machine.travel(NOW + timedelta(days=2), tick=False):
        advance_escalations(now=NOW + timedelta(days=2))
        task = Task.objects.get(kind="escalation")
        assert call(episode.tokens["executive"], "post", f"tasks/{task.pk}/acknowledge").status_code == 403
        response = call(episode.tokens["member"], "post", f"tasks/{task.pk}/acknowledge")
    assert response.json()["state"] == "acknowledged"


def test_a_personal_token_sees_its_own_notifications(episode):
    own = call(episode.tokens["lead"], "get", "notifications").json()
    assert own and {n["recipient"] for n in own} == {"lead@acme.test"}
    assert call(episode.tokens["member"], "get", "notifications").json() == []
    assert {n["channel"] for n in call(episode.token, "get", "notifications?recipient=lead@acme.test").json()} == {
        "in_app",
        "email",
    }
