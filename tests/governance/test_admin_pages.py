"""The organization's administration pages through HTTP: who may do what, and what each refusal looks like."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from governance.audit_entries import KINDS
from governance.models import AuditEvent, Invitation, Membership, Organization, Role, Team
from governance.services.audit import audit_log
from governance.services.teams import team_create, team_update
from tests.conftest import Tenant
from tests.factories import MembershipFactory, TeamFactory

SETTINGS = {
    "name": "Acme Renamed",
    "timezone": "Europe/Berlin",
    "business_days": ["mon", "tue", "wed"],
    "business_start": "08:00",
    "business_end": "16:00",
}


def url(tenant: Tenant, name: str, **kwargs) -> str:
    return reverse(name, kwargs={"org_slug": tenant.org.slug, **kwargs})


def tenant_rows(tenant: Tenant) -> list:
    """Everything a refused request could have changed."""
    return [
        list(Organization.objects.filter(pk=tenant.org.pk).values()),
        list(Team.objects.filter(organization=tenant.org).values().order_by("pk")),
        list(Membership.objects.filter(organization=tenant.org).values().order_by("pk")),
        sorted(
            Membership.teams.through.objects.filter(team__organization=tenant.org).values_list(
                "membership_id", "team_id"
            )
        ),
        list(Invitation.objects.filter(organization=tenant.org).values().order_by("pk")),
    ]


def denials(tenant: Tenant, membership: Membership) -> list[dict]:
    return [
        e.after
        for e in AuditEvent.objects.filter(
            organization=tenant.org, verb="security.permission_denied", actor=membership.user
        )
    ]


@pytest.fixture
def dormant(tenant) -> Membership:
    """A deactivated member of `tenant`, for the reactivate endpoint."""
    return MembershipFactory(organization=tenant.org, is_active=False, user__email="dormant@acme.test")


# --- the role matrix of the admin-only endpoints -------------------------------------------------


@dataclass
class Endpoint:
    name: str
    method: str
    kwargs: Callable[[Tenant, Membership], dict] = lambda t, d: {}
    data: dict = field(default_factory=dict)
    # For the admin: the expected status and a check that the change happened.
    status: int = 302
    done: Callable[[Tenant, Membership], bool] = lambda t, d: True


def expire(invitation: Invitation) -> Invitation:
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now())
    return invitation


ADMIN_ONLY = [
    Endpoint("governance:organization_settings", "get", status=200),
    Endpoint(
        "governance:organization_settings",
        "post",
        data=SETTINGS,
        done=lambda t, d: Organization.objects.filter(pk=t.org.pk, name="Acme Renamed", business_end=time(16)).exists(),
    ),
    Endpoint("governance:member_list", "get", status=200),
    Endpoint(
        "governance:member_list",
        "post",
        data={"email": "newcomer@acme.test", "role": Role.MEMBER},
        done=lambda t, d: (
            Invitation.objects.filter(organization=t.org, email="newcomer@acme.test").exists() and len(mail.outbox) == 1
        ),
    ),
    Endpoint(
        "governance:member_role",
        "post",
        kwargs=lambda t, d: {"membership_id": t.member.pk},
        data={"role": Role.ADMIN},
        done=lambda t, d: Membership.objects.get(pk=t.member.pk).role == Role.ADMIN,
    ),
    Endpoint(
        "governance:member_deactivate",
        "post",
        kwargs=lambda t, d: {"membership_id": t.member.pk},
        done=lambda t, d: not Membership.objects.get(pk=t.member.pk).is_active,
    ),
    Endpoint(
        "governance:member_reactivate",
        "post",
        kwargs=lambda t, d: {"membership_id": d.pk},
        done=lambda t, d: Membership.objects.get(pk=d.pk).is_active,
    ),
    Endpoint(
        "governance:invitation_resend",
        "post",
        kwargs=lambda t, d: {"invitation_id": expire(t.invitation).pk},
        done=lambda t, d: Invitation.objects.get(pk=t.invitation.pk).revoked_at is not None and len(mail.outbox) == 1,
    ),
    Endpoint(
        "governance:invitation_revoke",
        "post",
        kwargs=lambda t, d: {"invitation_id": t.invitation.pk},
        done=lambda t, d: Invitation.objects.get(pk=t.invitation.pk).revoked_at is not None,
    ),
]
ADMIN_ONLY_IDS = [f"{e.name}-{e.method}" for e in ADMIN_ONLY]


@pytest.mark.parametrize("role", ["member", "executive", "lead"])
@pytest.mark.parametrize("endpoint", ADMIN_ONLY, ids=ADMIN_ONLY_IDS)
def test_admin_only_pages_refuse_other_roles_audit_it_and_change_nothing(
    tenant, dormant, endpoint, role, django_capture_on_commit_callbacks
):
    who = getattr(tenant, role)
    path = url(tenant, endpoint.name, **endpoint.kwargs(tenant, dormant))
    before = tenant_rows(tenant)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = getattr(tenant.client(who), endpoint.method)(path, endpoint.data)

    assert response.status_code == 403
    assert "Only admins may do this." in response.content.decode()
    assert denials(tenant, who) == [{"what": "admins", "path": path, "method": endpoint.method.upper()}]
    assert tenant_rows(tenant) == before
    assert (callbacks, mail.outbox) == ([], [])


@pytest.mark.parametrize("endpoint", ADMIN_ONLY, ids=ADMIN_ONLY_IDS)
def test_admin_only_pages_work_for_an_admin(tenant, dormant, endpoint, django_capture_on_commit_callbacks):
    path = url(tenant, endpoint.name, **endpoint.kwargs(tenant, dormant))

    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(tenant.client(tenant.admin), endpoint.method)(path, endpoint.data)

    assert response.status_code == endpoint.status
    assert endpoint.done(tenant, dormant)
    assert not AuditEvent.objects.filter(verb="security.permission_denied").exists()


def test_saving_the_settings_page_records_an_audit_event_with_before_and_after(tenant):
    response = tenant.client(tenant.admin).post(url(tenant, "governance:organization_settings"), SETTINGS)

    assert response.status_code == 302
    event = AuditEvent.objects.get(verb="organization.updated")
    assert event.actor == tenant.admin.user
    assert event.changes == [
        ("business_days", ["mon", "tue", "wed", "thu", "fri"], ["mon", "tue", "wed"]),
        ("business_end", "17:00:00", "16:00:00"),
        ("business_start", "09:00:00", "08:00:00"),
        ("name", "Acme", "Acme Renamed"),
    ]


def test_an_admin_limits_how_long_raw_measurements_are_kept(tenant):
    page = url(tenant, "governance:organization_settings")
    client = tenant.client(tenant.admin)

    too_short = client.post(page, {**SETTINGS, "raw_measurement_days": "3"})
    assert too_short.status_code == 200 and "greater than or equal to 7" in too_short.content.decode()
    assert client.post(page, {**SETTINGS, "raw_measurement_days": "90"}).status_code == 302

    tenant.org.refresh_from_db()
    assert tenant.org.raw_measurement_days == 90
    event = AuditEvent.objects.get(verb="organization.updated")
    assert ("raw_measurement_days", None, 90) in event.changes


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("executive", 200), ("member", 403), ("lead", 403)])
def test_the_audit_log_is_for_admins_and_executives(tenant, role, status):
    who = getattr(tenant, role)

    response = tenant.client(who).get(url(tenant, "governance:audit_list"))

    assert response.status_code == status
    if status == 403:
        assert denials(tenant, who) == [
            {"what": "admins or executives", "path": url(tenant, "governance:audit_list"), "method": "GET"}
        ]
        assert "member.invited" not in response.content.decode()
    else:
        assert "member.invited" in response.content.decode()
        assert not AuditEvent.objects.filter(verb="security.permission_denied").exists()


# --- teams ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "executive", "member", "lead"])
def test_everyone_can_see_the_team_list_and_a_team(tenant, role):
    client = tenant.client(getattr(tenant, role))

    listing = client.get(url(tenant, "governance:team_list"))
    detail = client.get(url(tenant, "governance:team_detail", team_id=tenant.team.pk))

    assert listing.status_code == detail.status_code == 200
    assert "Operations" in listing.content.decode()
    assert "Operations" in detail.content.decode()
    assert ("New team" in listing.content.decode()) is (role == "admin")
    assert ("Edit team" in detail.content.decode()) is (role == "admin")
    assert ("Choose members" in detail.content.decode()) is (role in ("admin", "lead"))


@pytest.mark.parametrize("role", ["executive", "member", "lead"])
def test_only_an_admin_creates_a_team(tenant, role):
    who = getattr(tenant, role)

    response = tenant.client(who).post(url(tenant, "governance:team_list"), {"name": "Sales", "key": "sales"})

    assert response.status_code == 403
    assert denials(tenant, who) == [{"what": "admins", "path": url(tenant, "governance:team_list"), "method": "POST"}]
    assert not Team.objects.filter(key="sales").exists()


def test_an_admin_creates_a_team_with_a_parent_and_a_lead(tenant):
    response = tenant.client(tenant.admin).post(
        url(tenant, "governance:team_list"),
        {"name": "Sales", "key": "sales", "parent": tenant.team.pk, "lead": tenant.member.pk},
    )

    assert response.status_code == 302
    team = Team.objects.get(organization=tenant.org, key="sales")
    assert (team.name, team.parent, team.lead) == ("Sales", tenant.team, tenant.member)
    assert tenant.member in team.memberships.all()
    assert AuditEvent.objects.filter(verb="team.created", object_id=str(team.pk), actor=tenant.admin.user).exists()


@pytest.mark.parametrize("role", ["executive", "member", "lead"])
def test_only_an_admin_edits_a_team(tenant, role):
    who = getattr(tenant, role)
    path = url(tenant, "governance:team_detail", team_id=tenant.team.pk)
    before = tenant_rows(tenant)

    response = tenant.client(who).post(path, {"action": "edit", "name": "Hijacked", "key": "ops"})

    assert response.status_code == 403
    assert denials(tenant, who) == [{"what": "admins", "path": path, "method": "POST"}]
    assert tenant_rows(tenant) == before


def test_an_admin_edits_a_team(tenant):
    response = tenant.client(tenant.admin).post(
        url(tenant, "governance:team_detail", team_id=tenant.team.pk),
        {"action": "edit", "name": "Operations EMEA", "key": "ops-emea", "lead": tenant.lead.pk},
    )

    assert response.status_code == 302
    tenant.team.refresh_from_db()
    assert (tenant.team.name, tenant.team.key, tenant.team.lead) == (
        "Operations EMEA",
        "ops-emea",
        tenant.lead,
    )


@pytest.mark.parametrize("role", ["admin", "lead"])
def test_an_admin_or_the_teams_lead_chooses_its_members(tenant, role):
    response = tenant.client(getattr(tenant, role)).post(
        url(tenant, "governance:team_detail", team_id=tenant.team.pk),
        {"action": "members", "members": [tenant.executive.pk]},
    )

    assert response.status_code == 302
    assert set(tenant.team.memberships.all()) == {tenant.executive, tenant.lead}
    event = AuditEvent.objects.get(verb="team.members_changed")
    assert event.actor == getattr(tenant, role).user
    assert event.after == {"members": sorted(["exec@acme.test", "lead@acme.test"])}


@pytest.mark.parametrize("role", ["member", "executive"])
def test_anyone_but_an_admin_or_the_lead_cannot_choose_a_teams_members(tenant, role):
    who = getattr(tenant, role)
    path = url(tenant, "governance:team_detail", team_id=tenant.team.pk)
    before = tenant_rows(tenant)

    response = tenant.client(who).post(path, {"action": "members", "members": [who.pk]})

    assert response.status_code == 403
    assert denials(tenant, who) == [{"what": "admins and the team's lead", "path": path, "method": "POST"}]
    assert tenant_rows(tenant) == before


def test_a_replaced_lead_loses_the_right_to_choose_members(tenant):
    old_lead = tenant.lead
    team_update(team=tenant.team, actor=tenant.admin.user, lead=tenant.member)
    path = url(tenant, "governance:team_detail", team_id=tenant.team.pk)
    before = tenant_rows(tenant)

    refused = tenant.client(old_lead).post(path, {"action": "members", "members": [tenant.executive.pk]})

    assert refused.status_code == 403
    assert len(denials(tenant, old_lead)) == 1
    assert tenant_rows(tenant) == before
    allowed = tenant.client(tenant.member).post(path, {"action": "members", "members": [tenant.executive.pk]})
    assert allowed.status_code == 302
    assert set(tenant.team.memberships.all()) == {tenant.executive, tenant.member}


def test_a_lead_cannot_choose_members_of_another_team(tenant):
    other = team_create(org=tenant.org, actor=tenant.admin.user, key="sales", name="Sales")
    path = url(tenant, "governance:team_detail", team_id=other.pk)

    response = tenant.client(tenant.lead).post(path, {"action": "members", "members": [tenant.lead.pk]})

    assert response.status_code == 403
    assert not other.memberships.exists()


def test_a_team_parent_from_another_organization_is_a_form_error(tenant, stranger_tenant):
    teams = Team.objects.count()

    response = tenant.client(tenant.admin).post(
        url(tenant, "governance:team_list"), {"name": "Sales", "key": "sales", "parent": stranger_tenant.team.pk}
    )

    assert response.status_code == 200
    assert "parent" in response.context["form"].errors
    assert Team.objects.count() == teams
    assert not stranger_tenant.team.children.exists()


@pytest.mark.parametrize("depth", [1, 2])
def test_a_team_cannot_be_moved_under_its_own_descendant(tenant, depth):
    updates = AuditEvent.objects.filter(verb="team.updated").count()
    parent = tenant.team
    for level in range(depth):
        parent = team_create(
            org=tenant.org, actor=tenant.admin.user, key=f"sub-{level}", name=f"Sub {level}", parent=parent
        )

    response = tenant.client(tenant.admin).post(
        url(tenant, "governance:team_detail", team_id=tenant.team.pk),
        {"action": "edit", "name": "Operations", "key": "ops", "parent": parent.pk},
    )

    assert response.status_code == 200
    assert "parent" in response.context["edit_form"].errors
    tenant.team.refresh_from_db()
    assert tenant.team.parent is None
    assert AuditEvent.objects.filter(verb="team.updated").count() == updates


def test_a_team_key_is_unique_within_the_organization(tenant):
    teams = Team.objects.count()

    response = tenant.client(tenant.admin).post(
        url(tenant, "governance:team_list"), {"name": "Other ops", "key": "ops"}
    )

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert not response.context["form"].is_valid()
    assert Team.objects.count() == teams


def test_the_same_team_key_is_fine_in_another_organization(tenant, stranger_tenant):
    TeamFactory(organization=stranger_tenant.org, key="sales", name="Sales")

    response = tenant.client(tenant.admin).post(url(tenant, "governance:team_list"), {"name": "Sales", "key": "sales"})

    assert response.status_code == 302
    assert Team.objects.filter(key="sales").count() == 2
    assert Team.objects.filter(organization=tenant.org, key="sales").exists()


# --- members --------------------------------------------------------------------------------------


def test_changing_a_role_with_htmx_returns_only_the_row_and_is_audited(tenant):
    response = tenant.client(tenant.admin).post(
        url(tenant, "governance:member_role", membership_id=tenant.member.pk),
        {"role": Role.EXECUTIVE},
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tr id="member-{tenant.member.pk}"')
    assert "<html" not in body
    assert body.count("<tr") == 1
    tenant.member.refresh_from_db()
    assert tenant.member.role == Role.EXECUTIVE
    event = AuditEvent.objects.get(verb="member.role_changed")
    assert (event.actor, event.object_id) == (tenant.admin.user, str(tenant.member.pk))
    assert (event.before, event.after) == ({"role": Role.MEMBER}, {"role": Role.EXECUTIVE})
    assert f"{tenant.member.user.name} is now executive (was member)." in body  # said where the admin looks


def test_a_role_change_asks_first_and_says_what_changed_without_htmx(tenant):
    client = tenant.client(tenant.admin)
    page = client.get(url(tenant, "governance:member_list")).content.decode()
    assert 'hx-trigger="change"' not in page  # moving the dropdown alone changes nothing
    assert f'hx-confirm="Change the role of {tenant.member.user.name}?' in page

    response = client.post(
        url(tenant, "governance:member_role", membership_id=tenant.member.pk), {"role": Role.EXECUTIVE}, follow=True
    )
    assert f"{tenant.member.user.name} is now executive (was member)." in response.content.decode()
    deactivated = client.post(url(tenant, "governance:member_deactivate", membership_id=tenant.member.pk), follow=True)
    assert f"{tenant.member.user.name} is deactivated and can no longer sign in here." in deactivated.content.decode()


def test_the_last_admin_cannot_be_demoted(tenant):
    path = url(tenant, "governance:member_role", membership_id=tenant.admin.pk)
    client = tenant.client(tenant.admin)

    row = client.post(path, {"role": Role.MEMBER}, HTTP_HX_REQUEST="true")
    page = client.post(path, {"role": Role.MEMBER}, follow=True)

    assert row.status_code == 200
    assert "This is the last admin; make someone else admin first." in row.content.decode()
    assert page.redirect_chain == [(url(tenant, "governance:member_list"), 302)]
    assert "This is the last admin; make someone else admin first." in page.content.decode()
    tenant.admin.refresh_from_db()
    assert tenant.admin.role == Role.ADMIN
    assert not AuditEvent.objects.filter(verb="member.role_changed").exists()


def test_an_admin_cannot_deactivate_themself_even_as_the_last_admin(tenant):
    path = url(tenant, "governance:member_deactivate", membership_id=tenant.admin.pk)
    client = tenant.client(tenant.admin)

    row = client.post(path, HTTP_HX_REQUEST="true")
    page = client.post(path, follow=True)

    assert "You cannot deactivate yourself." in row.content.decode()
    assert "You cannot deactivate yourself." in page.content.decode()
    tenant.admin.refresh_from_db()
    assert tenant.admin.is_active
    assert not AuditEvent.objects.filter(verb="member.deactivated").exists()


def test_an_admin_cannot_deactivate_themself_when_other_admins_exist(tenant):
    MembershipFactory(organization=tenant.org, role=Role.ADMIN)

    response = tenant.client(tenant.admin).post(
        url(tenant, "governance:member_deactivate", membership_id=tenant.admin.pk), HTTP_HX_REQUEST="true"
    )

    assert "You cannot deactivate yourself." in response.content.decode()
    tenant.admin.refresh_from_db()
    assert tenant.admin.is_active


def test_an_admin_may_deactivate_another_admin(tenant):
    other = MembershipFactory(organization=tenant.org, role=Role.ADMIN)

    response = tenant.client(tenant.admin).post(url(tenant, "governance:member_deactivate", membership_id=other.pk))

    assert response.status_code == 302
    other.refresh_from_db()
    assert not other.is_active
    assert AuditEvent.objects.filter(verb="member.deactivated", object_id=str(other.pk)).count() == 1


def test_a_team_lead_cannot_be_deactivated_and_the_message_names_the_team(tenant):
    path = url(tenant, "governance:member_deactivate", membership_id=tenant.lead.pk)
    client = tenant.client(tenant.admin)

    row = client.post(path, HTTP_HX_REQUEST="true")
    page = client.post(path, follow=True)

    message = f"{tenant.lead.user} leads Operations; choose another lead first."
    assert message in row.content.decode()
    assert message in page.content.decode()
    tenant.lead.refresh_from_db()
    assert tenant.lead.is_active
    assert not AuditEvent.objects.filter(verb="member.deactivated").exists()


# --- organization settings --------------------------------------------------------------------------


def test_business_hours_must_end_after_they_start(tenant):
    before = tenant_rows(tenant)

    response = tenant.client(tenant.admin).post(
        url(tenant, "governance:organization_settings"),
        {**SETTINGS, "business_start": "17:00", "business_end": "09:00"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["business_end"] == ["Business hours must end after they start."]
    assert tenant_rows(tenant) == before
    # The page's header shows the stored name, not the refused one.
    assert "Acme Renamed" not in response.content.decode().split('<form method="post" class="form">')[0]


def test_an_unknown_timezone_is_refused(tenant):
    before = tenant_rows(tenant)

    response = tenant.client(tenant.admin).post(
        url(tenant, "governance:organization_settings"), {**SETTINGS, "timezone": "Mars/Olympus"}
    )

    assert response.status_code == 200
    assert "timezone" in response.context["form"].errors
    assert tenant_rows(tenant) == before
    assert Organization.objects.get(pk=tenant.org.pk).timezone == "Europe/Berlin"


# --- the audit page ---------------------------------------------------------------------------------


def event(tenant: Tenant, verb: str, actor: Membership, repr_: str, at: datetime) -> AuditEvent:
    return AuditEvent.objects.create(
        organization=tenant.org, actor=actor.user, verb=verb, object_repr=repr_, created_at=at
    )


@pytest.fixture
def history(tenant) -> dict[str, AuditEvent]:
    return {
        "team-by-admin": event(tenant, "team.created", tenant.admin, "r-team", datetime(2025, 3, 5, 10, 0, tzinfo=UTC)),
        "member-by-exec": event(
            tenant,
            "member.role_changed",
            tenant.executive,
            "r-member",
            datetime(2025, 3, 5, 11, 0, tzinfo=UTC),
        ),
        # 23:30 on the 10th in Berlin (UTC+1 in March before the switch): still the 10th.
        "late-10th": event(
            tenant, "team.updated", tenant.admin, "r-late-10", datetime(2025, 3, 10, 22, 30, tzinfo=UTC)
        ),
        # 00:30 on the 11th in Berlin, though still the 10th in UTC.
        "early-11th": event(
            tenant, "team.updated", tenant.executive, "r-early-11", datetime(2025, 3, 10, 23, 30, tzinfo=UTC)
        ),
        "security-12th": event(
            tenant,
            "security.permission_denied",
            tenant.member,
            "r-security",
            datetime(2025, 3, 12, 9, 0, tzinfo=UTC),
        ),
    }


def listed(response) -> set[str]:
    return {e.object_repr for e in response.context["page"].object_list}


def test_the_audit_page_filters_by_kind(tenant, history):
    response = tenant.client(tenant.admin).get(
        url(tenant, "governance:audit_list"), {"verb": "team.", "until": "2025-03-31"}
    )

    assert response.status_code == 200
    assert listed(response) == {"r-team", "r-late-10", "r-early-11"}
    assert "r-member" not in response.content.decode()


def test_the_audit_page_filters_by_actor(tenant, history):
    response = tenant.client(tenant.admin).get(
        url(tenant, "governance:audit_list"), {"actor": tenant.executive.pk, "until": "2025-03-31"}
    )

    assert listed(response) == {"r-member", "r-early-11"}


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2025-03-10", "2025-03-10", {"r-late-10"}),
        ("2025-03-11", "2025-03-11", {"r-early-11"}),
        ("2025-03-11", "2025-03-12", {"r-early-11", "r-security"}),
        ("", "2025-03-05", {"r-team", "r-member"}),
    ],
)
def test_the_audit_page_filters_by_the_organizations_calendar_days(tenant, history, since, until, expected):
    response = tenant.client(tenant.executive).get(
        url(tenant, "governance:audit_list"), {"since": since, "until": until}
    )

    assert listed(response) == expected


def test_the_audit_page_answers_htmx_with_only_the_results(tenant, history):
    response = tenant.client(tenant.admin).get(
        url(tenant, "governance:audit_list"), {"verb": "member.", "until": "2025-03-31"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    body = response.content.decode().strip()
    assert body.startswith('<div id="audit-results">')
    assert "<html" not in body
    assert "<form" not in body
    assert "r-member" in body
    assert "r-team" not in body


# --- query counts ---------------------------------------------------------------------------------


EXTRA = 30
# Measured at 9 and 7 queries, the same with 0 or 30 extra members; +2 headroom so that real growth fails.
MEMBERS_PAGE_QUERIES = 9 + 2
TEAM_LIST_QUERIES = 7 + 2


@pytest.fixture
def crowded(tenant) -> Tenant:
    for member in MembershipFactory.create_batch(EXTRA, organization=tenant.org):
        member.teams.add(tenant.team)
    for n in range(5):
        team_create(
            org=tenant.org,
            actor=tenant.admin.user,
            key=f"extra-{n}",
            name=f"Extra {n}",
            parent=tenant.team,
            lead=tenant.member,
        )
    return tenant


def test_the_members_page_query_count_does_not_grow_with_members(crowded, django_assert_max_num_queries):
    client = crowded.client(crowded.admin)
    with django_assert_max_num_queries(MEMBERS_PAGE_QUERIES):
        response = client.get(url(crowded, "governance:member_list"))
    assert response.status_code == 200
    assert response.content.decode().count('<tr id="member-') == 4 + EXTRA


def test_the_team_list_query_count_does_not_grow_with_members(crowded, django_assert_max_num_queries):
    client = crowded.client(crowded.admin)  # the admin's page also renders the create form's choices
    with django_assert_max_num_queries(TEAM_LIST_QUERIES):
        response = client.get(url(crowded, "governance:team_list"))
    assert response.status_code == 200
    counts = {node.team.key: node.member_count for node in response.context["teams"]}
    assert counts == {"ops": 2 + EXTRA, **{f"extra-{n}": 1 for n in range(5)}}
    assert response.content.decode().count("<option") >= 4 + EXTRA


def test_the_audit_page_writes_sentences_that_link_to_their_object(tenant):
    path = tenant.episode.path
    audit_log(
        org=tenant.org, actor=tenant.executive.user, verb="mitigation_path.approved", obj=path, after={"ok": True}
    )
    response = tenant.client(tenant.admin).get(url(tenant, "governance:audit_list"), {"verb": "mitigation_path."})
    body = response.content.decode()
    workstream_url = reverse(
        "escalations:workstream_detail", kwargs={"org_slug": tenant.org.slug, "workstream_id": path.workstream_id}
    )
    name = tenant.executive.user.name
    assert f'{name} approved the <a href="{workstream_url}">mitigation path for {tenant.kpi.name}</a>.' in body
    assert "<dt>Ok</dt><dd><ins>yes</ins></dd>" in body  # a field in words, not a JSON dump


def test_the_audit_page_shows_one_objects_history(tenant, history):
    team = tenant.team
    audit_log(org=tenant.org, actor=tenant.admin.user, verb="team.updated", obj=team, before={"name": "A"}, after={})
    response = tenant.client(tenant.admin).get(
        url(tenant, "governance:audit_list"), {"object": f"governance.team:{team.pk}"}
    )
    assert listed(response) == {str(team)}
    assert f"Events of <strong>{team}</strong>" in response.content.decode()
    refused = tenant.client(tenant.admin).get(url(tenant, "governance:audit_list"), {"object": "x; drop"})
    assert refused.status_code == 200 and "Some filters are not valid" in refused.content.decode()


def test_every_kind_of_event_written_by_the_code_is_a_filter_choice():
    source = "\n".join(
        p.read_text()
        for app in ("governance", "scorecards", "dependencies", "escalations")
        for p in Path(app).rglob("*.py")
    )
    prefixes = set(re.findall(r'verb=f?"([a-z_]+)\.', source))
    assert prefixes and prefixes <= {prefix.rstrip(".") for prefix in KINDS}
