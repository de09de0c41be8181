"""SCIM 2.0 provisioning, replaying request sequences as Okta and Entra ID send them (tests/identity/recorded/):
create, update, deactivate; a leaver who owns KPIs is refused at once and each KPI gets a transfer request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from escalations.engine.sweeps import advance_escalations
from escalations.models import Task
from governance.identity.models import ScimGroup, SingleSignOn
from governance.identity.services import sso_configure, sync_from_groups
from governance.models import AuditEvent, Membership, Role, Scope
from governance.services.api_tokens import api_token_create
from scorecards.models import OwnershipTransfer
from tests.factories import KpiFactory, MembershipFactory, TeamFactory

pytestmark = pytest.mark.django_db
RECORDED = Path(__file__).parent / "recorded"


def configure(org, actor, issuer: str) -> None:
    """Single sign-on's group mapping, which SCIM groups feed as the ID token's groups claim does."""
    team_key = org.teams.order_by("pk").first().key
    sso_configure(
        org=org,
        actor=actor,
        issuer=issuer,
        client_id="steerco",
        client_secret_name="oidc_client_secret",
        domains=["scim.example.test"],
        group_mapping=[["steerco-execs", Role.EXECUTIVE], ["steerco-execs", f"team:{team_key}"]],
    )


def scim_token(tenant, scopes=(Scope.SCIM,)) -> str:
    return api_token_create(org=tenant.org, actor=tenant.admin.user, name="Identity provider", scopes=list(scopes))[1]


def replay(client: Client, token: str, steps: list[dict], ids: dict, then=lambda moment: None) -> None:
    """Sends the recorded requests with the ids the earlier answers gave; `then` checks the state a step names."""

    def fill(text: str) -> str:
        for key, value in ids.items():
            text = text.replace("{" + key + "}", value)
        return text

    for step in steps:
        path = fill(step["path"])
        body = fill(json.dumps(step["body"])) if "body" in step else ""
        response = client.generic(
            step["method"], path, body, content_type="application/scim+json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert response.status_code == step["status"], (step["method"], path, response.content)
        if response.status_code != 204:
            assert response["Content-Type"] == "application/scim+json"
            data = response.json()
            for key, value in step.get("expect", {}).items():
                assert data[key] == value, (step["method"], path, key, data)
            if step["method"] == "POST":
                ids[step.get("save_as", "id")] = data["id"]
        if "then" in step:
            then(step["then"])


@pytest.mark.parametrize(("dialect", "tail"), [("okta", 1), ("entra", 2)])
def test_a_leaver_who_owns_kpis_is_refused_at_once_and_each_kpi_gets_a_transfer_request(tenant, dialect, tail):
    steps = json.loads((RECORDED / f"{dialect}_users.json").read_text())
    token, client, ids = scim_token(tenant), Client(), {}
    replay(client, token, steps[:-tail], ids)  # provisioned and renamed

    leaver = Membership.objects.select_related("user").get(pk=ids["id"])
    assert leaver.organization == tenant.org and leaver.role == Role.MEMBER and leaver.user.name == "Lee Leaver-Smith"
    led_team = TeamFactory(organization=tenant.org, lead=leaver)
    in_team = KpiFactory(organization=tenant.org, team=tenant.team, owner=leaver)  # tenant.team's lead takes it
    in_led = KpiFactory(organization=tenant.org, team=led_team, owner=leaver)  # they lead it: an admin takes it
    browser = Client()
    browser.force_login(leaver.user)
    assert browser.get(f"/o/{tenant.org.slug}/").status_code == 200

    replay(client, token, steps[-tail:], ids)  # the provider deactivates them

    leaver.refresh_from_db()
    assert not leaver.is_active
    assert browser.get(f"/o/{tenant.org.slug}/").status_code == 404  # refused at once
    transfers = {t.kpi_id: t for t in OwnershipTransfer.objects.filter(from_owner=leaver)}
    assert transfers[in_team.pk].to_owner == tenant.team.lead
    assert transfers[in_led.pk].to_owner.role == Role.ADMIN
    assert all(t.state == OwnershipTransfer.State.PENDING for t in transfers.values())
    in_team.refresh_from_db()
    assert in_team.owner == leaver  # nothing silently reassigned: the owner changes when someone accepts
    [event] = AuditEvent.objects.filter(organization=tenant.org, verb="member.deactivated", object_id=str(leaver.pk))
    assert (
        event.after["by"] == "scim" and event.after["leads"] == [led_team.name] and len(event.after["handed_on"]) == 2
    )
    assert AuditEvent.objects.filter(organization=tenant.org, verb="kpi.transfer_requested").count() >= 2
    advance_escalations()  # the beat's sweep: each request is a task in the inbox of the person asked
    asked = Task.objects.filter(kind=Task.Kind.OWNERSHIP_TRANSFER).values_list("kpi_id", "assignee_id")
    assert set(asked) == {(kpi, transfer.to_owner_id) for kpi, transfer in transfers.items()}


def test_a_token_without_the_scim_scope_or_no_token_is_refused(tenant):
    client = Client()
    assert client.get("/scim/v2/Users").status_code == 401
    response = client.get("/scim/v2/Users", HTTP_AUTHORIZATION=f"Bearer {scim_token(tenant, (Scope.ADMIN,))}")
    assert response.status_code == 403 and "scim" in response.json()["detail"]


def test_a_token_sees_only_its_own_organizations_members(tenant, stranger_tenant):
    token = scim_token(tenant)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert Client().get(f"/scim/v2/Users/{stranger_tenant.member.pk}", **auth).status_code == 404
    listed = Client().get("/scim/v2/Users?count=500", **auth).json()
    emails = {r["userName"] for r in listed["Resources"]}
    assert tenant.member.user.email in emails and stranger_tenant.member.user.email not in emails
    assert listed["totalResults"] == Membership.objects.filter(organization=tenant.org).count()


def test_bad_requests_get_scim_errors_and_change_nothing(tenant):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {scim_token(tenant)}", "content_type": "application/scim+json"}
    client = Client()
    assert client.get('/scim/v2/Users?filter=title sw "x"', **auth).json()["scimType"] == "invalidFilter"
    duplicate = client.post("/scim/v2/Users", {"userName": tenant.member.user.email}, **auth)
    assert duplicate.status_code == 409 and duplicate.json()["scimType"] == "uniqueness"
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": "maybe"}],
    }
    response = client.patch(f"/scim/v2/Users/{tenant.member.pk}", json.dumps(patch), **auth)
    assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"
    assert client.post("/scim/v2/Users", "not json", **auth).status_code == 400
    tenant.member.refresh_from_db()
    assert tenant.member.is_active


def test_a_member_who_leads_nothing_and_owns_nothing_is_simply_deactivated(tenant):
    member = MembershipFactory(organization=tenant.org)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {scim_token(tenant)}"}
    assert Client().delete(f"/scim/v2/Users/{member.pk}", **auth).status_code == 204
    member.refresh_from_db()
    assert not member.is_active and not OwnershipTransfer.objects.filter(from_owner=member).exists()


@pytest.mark.parametrize("dialect", ["okta", "entra"])
def test_group_membership_pushed_by_the_provider_syncs_role_and_team(tenant, dialect):
    configure(tenant.org, tenant.admin.user, "https://idp.example.test")
    member = MembershipFactory(organization=tenant.org, role=Role.MEMBER)
    steps = json.loads((RECORDED / f"{dialect}_groups.json").read_text())
    seen = {}

    def then(moment: str) -> None:
        member.refresh_from_db()
        seen[moment] = (member.role, sorted(member.teams.values_list("key", flat=True)))

    replay(Client(), scim_token(tenant), steps, {"uid": str(member.pk)}, then)
    assert seen["joined"] == (Role.EXECUTIVE, [tenant.team.key])
    assert seen["left"] == (Role.MEMBER, [])
    verbs = list(
        AuditEvent.objects.filter(organization=tenant.org, verb__startswith="identity.").values_list("verb", flat=True)
    )
    assert "identity.scim_group_created" in verbs and verbs.count("identity.sso_role_synced") == 2


def test_a_group_change_never_demotes_the_last_admin_who_can_sign_in(tenant):
    configure(tenant.org, tenant.admin.user, "https://idp.example.test")
    sso = SingleSignOn.objects.get(organization=tenant.org)
    MembershipFactory(organization=tenant.org, role=Role.ADMIN, user__is_active=False)  # cannot sign in

    sync_from_groups(sso=sso, membership=tenant.admin, groups=[], actor=None)  # no group grants admin any more

    tenant.admin.refresh_from_db()
    assert tenant.admin.role == Role.ADMIN
    [kept] = AuditEvent.objects.filter(organization=tenant.org, verb="identity.sso_role_kept")
    assert kept.after["reason"] == "the organization's last admin"
    MembershipFactory(organization=tenant.org, role=Role.ADMIN)
    sync_from_groups(sso=sso, membership=tenant.admin, groups=[], actor=None)
    tenant.admin.refresh_from_db()
    assert tenant.admin.role == Role.MEMBER


def test_groups_of_another_organization_and_unknown_members_are_refused(tenant, stranger_tenant):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {scim_token(tenant)}", "content_type": "application/scim+json"}
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "x",
        "members": [{"value": str(stranger_tenant.member.pk)}],
    }
    response = Client().post("/scim/v2/Groups", body, **auth)
    assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"
    assert not ScimGroup.objects.exists()
    created = Client().post("/scim/v2/Groups", {**body, "members": []}, **auth)
    assert created.status_code == 201
    duplicate = Client().post("/scim/v2/Groups", {**body, "members": []}, **auth)
    assert duplicate.status_code == 409
    other = {"HTTP_AUTHORIZATION": f"Bearer {scim_token(stranger_tenant)}"}
    assert Client().get(f"/scim/v2/Groups/{created.json()['id']}", **other).status_code == 404
