"""Organization tokens carry scopes (API.md): each endpoint needs one and refuses a token without it, naming it.
A personal token acts as its member: scopes do not apply to it, the member's permissions do."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from ninja.constants import NOT_SET

from config.api import api
from governance.api import PERSONAL
from governance.manifest.engine import export_manifest
from governance.models import ApiToken, AuditEvent, Invitation, Scope
from governance.services.api_tokens import api_token_authenticate, api_token_create
from scorecards.models import Kpi, Measurement, OwnershipTransfer

# (method, OpenAPI path) -> (URL, body, what it needs)
ENDPOINTS = {
    ("post", "/api/v1/measurements"): (
        "measurements",
        {"measurements": [{"kpi": "ops.throughput", "at": "2026-11-01T00:00:00Z", "value": 1}]},
        Scope.MEASUREMENTS_WRITE,
    ),
    ("get", "/api/v1/kpis"): ("kpis", None, Scope.READ),
    ("get", "/api/v1/kpis/{key}"): ("kpis/ops.throughput", None, Scope.READ),
    ("get", "/api/v1/kpis/{key}/measurements"): ("kpis/ops.throughput/measurements", None, Scope.READ),
    ("get", "/api/v1/manifest"): ("manifest", None, Scope.READ),
    ("put", "/api/v1/manifest"): ("manifest?dry_run=true", "manifest", Scope.MANIFEST_WRITE),
    ("get", "/api/v1/workstreams"): ("workstreams", None, Scope.READ),
    ("post", "/api/v1/workstreams/{workstream_id}/mitigation"): (
        "workstreams/1/mitigation",
        {"root_cause": "x", "expected_recovery": "2030-01-01", "actions": []},
        PERSONAL,
    ),
    ("post", "/api/v1/workstreams/{workstream_id}/review"): ("workstreams/1/review", {"decision": "approve"}, PERSONAL),
    ("post", "/api/v1/workstreams/{workstream_id}/close"): (
        "workstreams/1/close",
        {"resolution": "accepted_risk", "reason": "x"},
        PERSONAL,
    ),
    ("get", "/api/v1/tasks"): ("tasks", None, Scope.READ),
    ("post", "/api/v1/tasks/{task_id}/acknowledge"): ("tasks/1/acknowledge", None, PERSONAL),
    ("post", "/api/v1/tasks/{task_id}/answer"): ("tasks/1/answer", {"impact": False, "reason": "x"}, PERSONAL),
    ("get", "/api/v1/notifications"): ("notifications", None, Scope.READ),
    ("get", "/api/v1/decisions"): ("decisions", None, Scope.READ),
    ("get", "/api/v1/secrets"): ("secrets", None, Scope.ADMIN),
    ("put", "/api/v1/secrets/{name}"): ("secrets/crm_token", {"value": "planted"}, Scope.ADMIN),
    ("delete", "/api/v1/secrets/{name}"): ("secrets/crm_token", None, Scope.ADMIN),
}


def call(token: str, method: str, url: str, body=None, content_type="application/json"):
    data = body if isinstance(body, str | bytes) or body is None else json.dumps(body, default=str)
    return getattr(Client(), method)(
        f"/api/v1/{url}", data=data, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def org_token(tenant, *scopes: str, actor="admin") -> str:
    creator = tenant.admin.user if actor == "admin" else None
    return api_token_create(org=tenant.org, actor=creator, name="scoped", scopes=scopes or None)[1]


@pytest.fixture(autouse=True)
def _counters():
    cache.clear()  # the rate limit's


def test_every_operation_declares_what_it_needs():
    operations = [
        operation
        for router in api._routers
        for path_view in router[1].path_operations.values()
        for operation in path_view.operations
    ]
    assert operations
    assert [op.view_func.__name__ for op in operations if op.auth_param is NOT_SET] == []
    paths = api.get_openapi_schema()["paths"]
    assert {(method, path) for path, methods in paths.items() for method in methods} == set(ENDPOINTS)
    for (method, path), (_url, _body, needs) in ENDPOINTS.items():
        assert paths[path][method]["security"] == [{"TokenAuth": [needs]}], (method, path)


@pytest.mark.parametrize("operation", sorted(ENDPOINTS), ids="-".join)
def test_it_refuses_a_token_without_the_scope_and_names_it(tenant, operation):
    url, body, needs = ENDPOINTS[operation]
    others = [scope for scope in Scope.values if scope != needs]
    if body == "manifest":
        body = export_manifest(tenant.org)
    response = call(org_token(tenant, *others), operation[0], url, body)
    assert response.status_code == 403, response.content
    [error] = response.json()["errors"]
    assert error["path"] == "Authorization"
    if needs == PERSONAL:
        assert "personal token" in error["message"]
    else:
        assert f'"{needs}"' in error["message"]
        # ... and lets the same request through with it.
        tenant.secret  # noqa: B018  (the crm_token the secrets' operations name)
        assert call(org_token(tenant, needs), operation[0], url, body).status_code in (200, 204)


def test_a_new_organization_token_only_sends_measurements(tenant):
    api_token, token = api_token_create(org=tenant.org, actor=tenant.admin.user, name="Loader")
    assert api_token.scopes == [Scope.MEASUREMENTS_WRITE]
    assert call(token, "post", *ENDPOINTS[("post", "/api/v1/measurements")][:2]).status_code == 200
    assert call(token, "get", "kpis").status_code == 403
    assert call(token, "put", "manifest", json.dumps(export_manifest(tenant.org), default=str)).status_code == 403
    assert Kpi.objects.get(pk=tenant.kpi.pk).name == "Throughput"


def test_the_command_takes_scopes_and_defaults_to_measurements(tenant, capsys):
    call_command("create_api_token", "--org", "acme", "--name", "Loader")
    assert api_token_authenticate(capsys.readouterr().out.split()[-1]).scopes == [Scope.MEASUREMENTS_WRITE]
    call_command("create_api_token", "--org", "acme", "--name", "Sync", "--scope", "read", "--scope", "manifest:write")
    out = capsys.readouterr().out
    assert "read, manifest:write" in out
    assert api_token_authenticate(out.split()[-1]).scopes == [Scope.READ, Scope.MANIFEST_WRITE]
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("create_api_token", "--org", "acme", "--name", "x", "--scope", "everything")
    with pytest.raises(CommandError, match="takes no scopes"):
        call_command(
            "create_api_token", "--org", "acme", "--name", "x", "--user", "member@acme.test", "--scope", "read"
        )


def test_a_personal_token_acts_as_its_member_whatever_the_scopes(tenant):
    assert ApiToken.objects.get(membership=tenant.member).scopes == []
    assert call(tenant.personal_token, "get", "kpis").status_code == 200  # every member reads
    response = call(tenant.personal_token, "post", *ENDPOINTS[("post", "/api/v1/measurements")][:2])
    assert response.status_code == 403
    assert "admin's personal token" in response.json()["errors"][0]["message"]
    assert call(tenant.personal_token, "get", "manifest").status_code == 403
    _, admin_token = api_token_create(org=tenant.org, actor=tenant.admin.user, name="x", membership=tenant.admin)
    assert call(admin_token, "get", "manifest").status_code == 200


def test_changing_members_through_a_manifest_needs_the_admin_scope(tenant):
    manifest = export_manifest(tenant.org)
    manifest["members"].append({"email": "mallory@evil.test", "role": "admin"})
    body = json.dumps(manifest, default=str)
    response = call(org_token(tenant, Scope.MANIFEST_WRITE), "put", "manifest", body)
    assert response.status_code == 403
    assert '"admin"' in response.json()["errors"][0]["message"]
    assert not Invitation.objects.filter(email="mallory@evil.test").exists()
    manifest["members"].pop()
    manifest["kpis"][0]["name"] = "Units shipped"  # the rest of a manifest needs manifest:write only
    assert call(org_token(tenant, Scope.MANIFEST_WRITE), "put", "manifest", json.dumps(manifest)).status_code == 200
    assert call(org_token(tenant, Scope.MANIFEST_WRITE, Scope.ADMIN), "put", "manifest", body).status_code == 200
    assert Invitation.objects.filter(email="mallory@evil.test", role="admin").exists()


def test_an_ownership_change_by_a_token_records_its_creator_as_deciding(tenant):
    manifest = export_manifest(tenant.org)
    manifest["kpis"][0]["owner"] = tenant.member.user.email
    body = json.dumps(manifest, default=str)
    response = call(org_token(tenant, Scope.MANIFEST_WRITE), "put", "manifest", body)
    assert response.status_code == 200, response.content
    transfer = OwnershipTransfer.objects.get(kpi=tenant.kpi, state=OwnershipTransfer.State.APPROVED)
    assert transfer.decided_by == tenant.admin.user
    assert Kpi.objects.get(pk=tenant.kpi.pk).owner == tenant.member


def test_a_token_with_no_person_behind_it_cannot_move_ownership(tenant):
    manifest = export_manifest(tenant.org)
    manifest["kpis"][0]["owner"] = tenant.member.user.email
    token = org_token(tenant, Scope.MANIFEST_WRITE, actor=None)  # made by create_api_token
    response = call(token, "put", "manifest", json.dumps(manifest, default=str))
    assert response.status_code == 403
    assert "who decided" in response.json()["errors"][0]["message"]
    assert Kpi.objects.get(pk=tenant.kpi.pk).owner == tenant.lead
    assert not OwnershipTransfer.objects.filter(state=OwnershipTransfer.State.APPROVED).exists()


def test_an_admin_chooses_the_scopes_on_the_tokens_page_and_sees_them(tenant):
    client = tenant.client(tenant.admin)
    url = reverse("governance:api_tokens", args=["acme"])
    response = client.post(url, {"name": "Nightly sync", "kind": "organization", "scopes": ["read", "manifest:write"]})
    assert response.status_code == 200
    assert api_token_authenticate(response.context["created"][1]).scopes == [Scope.READ, Scope.MANIFEST_WRITE]
    page = client.get(url).content.decode()
    assert "<code>read</code>, <code>manifest:write</code>" in page
    assert client.post(url, {"name": "None", "kind": "organization"}).status_code == 422
    assert AuditEvent.objects.filter(verb="api_token.created", after__scopes=["read", "manifest:write"]).exists()
    # A member sees no scopes to choose: a personal token acts as them.
    assert b'name="scopes"' not in tenant.client(tenant.member).get(url).content
    assert Measurement.objects.count() == 0


def test_tokens_made_before_scopes_keep_every_scope_after_the_migration(tenant):
    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("governance.migrations.0011_apitoken_scopes")
    ApiToken.objects.update(scopes=[])  # as the new column left every existing token
    # What the migration uses of its schema editor (SQLite's cannot open inside the test's transaction).
    editor = SimpleNamespace(connection=connection, execute=lambda sql: connection.cursor().execute(sql))
    migration.grant_existing_tokens_every_scope(apps, editor)
    # Every scope there was then; later ones (scim) are granted by whoever needs them.
    assert ApiToken.objects.get(pk=tenant.api_token.pk).scopes == migration.ALL_SCOPES
    assert ApiToken.objects.get(membership=tenant.member).scopes == []  # a personal token acts as its member
