"""API tokens: created once and shown once, stored as an HMAC, revocable; the manifest over the API."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from governance.manifest.engine import export_manifest
from governance.models import ApiToken, AuditEvent
from governance.services.api_tokens import api_token_authenticate, api_token_digest
from scorecards.models import Kpi


def api(token: str, method: str, path: str, body: str | bytes | None = None, content_type="application/json"):
    return getattr(Client(), method)(
        f"/api/v1/{path}", data=body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def test_only_a_keyed_hash_of_the_token_is_stored(tenant, settings):
    stored = ApiToken.objects.get(pk=tenant.api_token.pk)
    assert tenant.token not in json.dumps(list(ApiToken.objects.values()), default=str)
    assert stored.digest == api_token_digest(tenant.token)
    assert stored.prefix == tenant.token[:12]
    settings.API_TOKEN_KEY = "another-key-another-key-another-key"
    assert api_token_authenticate(tenant.token) is None  # the key, not SECRET_KEY, makes the hash


def test_the_command_prints_the_token_alone_on_its_last_line(tenant, capsys):
    call_command("create_api_token", "--org", "acme", "--name", "Loader")
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert api_token_authenticate(token).membership is None
    call_command("create_api_token", "--org", "acme", "--name", "Mine", "--user", "MEMBER@acme.test")
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert api_token_authenticate(token).membership == tenant.member


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nope", "--name", "x"], 'No organization "nope".'),
        (["--org", "acme", "--name", "x", "--user", "admin@globex.test"], "admin@globex.test is not a member of Acme."),
        (["--org", "acme", "--name", " "], "Give the token a name"),
    ],
)
def test_the_command_explains_what_is_wrong(tenant, stranger_tenant, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_token", *args)


def test_a_member_creates_a_personal_token_and_sees_it_once(tenant):
    client = tenant.client(tenant.member)
    url = reverse("governance:api_tokens", args=["acme"])
    response = client.post(url, {"name": "Laptop script", "kind": "personal"})
    assert response.status_code == 200
    token = response.context["created"][1]
    assert token.encode() in response.content
    assert api_token_authenticate(token).membership == tenant.member
    page = client.get(url)
    assert token.encode() not in page.content
    assert b"Laptop script" in page.content
    assert AuditEvent.objects.filter(verb="api_token.created", actor=tenant.member.user).exists()


def test_a_member_cannot_create_an_organization_token_nor_see_other_tokens(tenant):
    client = tenant.client(tenant.member)
    response = client.post(reverse("governance:api_tokens", args=["acme"]), {"name": "Sneaky", "kind": "organization"})
    assert response.status_code == 422
    assert not ApiToken.objects.filter(name="Sneaky").exists()
    page = client.get(reverse("governance:api_tokens", args=["acme"]))
    # The organization's token is for admins' eyes.
    assert [t.name for t in page.context["tokens"]] == ["My script"]


def test_an_admin_creates_an_organization_token(tenant):
    response = tenant.client(tenant.admin).post(
        reverse("governance:api_tokens", args=["acme"]),
        {"name": "Nightly ETL", "kind": "organization", "scopes": "read"},
    )
    assert api_token_authenticate(response.context["created"][1]).membership is None


def test_admins_revoke_any_token_members_only_their_own(tenant):
    admin_token = tenant.api_token
    url = reverse("governance:api_token_revoke", args=["acme", admin_token.pk])
    assert tenant.client(tenant.member).post(url).status_code == 403
    assert api_token_authenticate(tenant.token) is not None
    personal = ApiToken.objects.get(membership=tenant.member)
    tenant.client(tenant.member).post(reverse("governance:api_token_revoke", args=["acme", personal.pk]))
    assert api_token_authenticate(tenant.personal_token) is None
    tenant.client(tenant.admin).post(url)
    assert api_token_authenticate(tenant.token) is None
    assert AuditEvent.objects.filter(verb="api_token.revoked").count() == 2


def test_the_tokens_page_renders_for_every_role(tenant):
    for membership in (tenant.admin, tenant.executive, tenant.member):
        assert tenant.client(membership).get(reverse("governance:api_tokens", args=["acme"])).status_code == 200


# --- /api/v1/manifest ----------------------------------------------------------------------------


def test_get_manifest_is_the_export(tenant):
    response = api(tenant.token, "get", "manifest")
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(export_manifest(tenant.org), default=str))


def test_put_manifest_dry_run_shows_the_diff_and_changes_nothing(tenant):
    manifest = export_manifest(tenant.org)
    manifest["kpis"][0]["name"] = "Units shipped"
    body = json.dumps(manifest, default=str)
    response = api(tenant.token, "put", "manifest?dry_run=true", body)
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["dry_run"] is True
    assert [(c["action"], c["key"], [f["field"] for f in c["fields"]]) for c in result["changes"]] == [
        ("update", "ops.throughput", ["name"])
    ]
    assert Kpi.objects.get(pk=tenant.kpi.pk).name == "Throughput"
    assert api(tenant.token, "put", "manifest", body).json()["dry_run"] is False
    assert Kpi.objects.get(pk=tenant.kpi.pk).name == "Units shipped"


def test_put_manifest_takes_yaml(tenant):
    manifest = export_manifest(tenant.org)
    manifest["kpis"][0]["name"] = "Units shipped"
    response = api(tenant.token, "put", "manifest", yaml.safe_dump(manifest), content_type="application/yaml")
    assert response.status_code == 200, response.content
    assert Kpi.objects.get(pk=tenant.kpi.pk).name == "Units shipped"


def test_an_invalid_manifest_is_422_with_every_error_by_path(tenant):
    manifest = export_manifest(tenant.org)
    manifest["kpis"][0]["owner"] = "nobody@acme.test"
    manifest["kpis"][0]["cadence"] = "often"
    response = api(tenant.token, "put", "manifest", json.dumps(manifest, default=str))
    assert response.status_code == 422
    paths = [e["path"] for e in response.json()["errors"]]
    assert "kpis[0].owner" in paths and "kpis[0].cadence" in paths


def test_a_token_cannot_apply_another_organizations_manifest(tenant, stranger_tenant):
    body = json.dumps(export_manifest(tenant.org), default=str)
    response = api(stranger_tenant.token, "put", "manifest", body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "organization.slug"


def test_only_org_tokens_and_admins_personal_tokens_touch_the_manifest(tenant):
    assert api(tenant.personal_token, "get", "manifest").status_code == 403
    assert api(tenant.personal_token, "put", "manifest", "{}").status_code == 403


def test_deactivating_a_member_revokes_their_personal_tokens_for_good(tenant):
    admin = tenant.client(tenant.admin)
    assert api(tenant.personal_token, "get", "kpis").status_code == 200
    members = f"/o/{tenant.org.slug}/members/{tenant.member.pk}"

    assert admin.post(f"{members}/deactivate/").status_code == 302
    assert admin.post(f"{members}/reactivate/").status_code == 302

    assert api(tenant.personal_token, "get", "kpis").status_code == 401  # reactivation revived nothing
    token = ApiToken.objects.get(membership=tenant.member)
    assert token.revoked_at is not None and token.revoked_by == tenant.admin.user
    assert AuditEvent.objects.get(verb="member.deactivated").after == {"is_active": False, "api_tokens_revoked": 1}
    assert api(tenant.token, "get", "kpis").status_code == 200  # the organization's own token is nobody's to lose
