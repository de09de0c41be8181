from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.utils import DatabaseError

from governance.models import AuditEvent, Organization, Role
from governance.services.members import membership_change_role, membership_set_active
from governance.services.organizations import organization_create, organization_update
from governance.services.teams import team_create, team_set_members, team_update
from scorecards.services import ownership_transfer_direct
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def test_it_creates_an_organization_with_its_creator_as_admin(db):
    user = UserFactory()
    org = organization_create(creator=user, slug="north-wind", name="North Wind", timezone_name="Asia/Tokyo")
    assert org.memberships.get().role == Role.ADMIN
    event = AuditEvent.objects.get(organization=org)
    assert (event.verb, event.actor, event.after["slug"]) == ("organization.created", user, "north-wind")


@pytest.mark.parametrize("slug", ["Upper", "-dash", "dash-", "with space", "x" * 51, "ü"])
def test_it_refuses_a_malformed_slug(db, slug):
    with pytest.raises(ValidationError) as error:
        organization_create(creator=UserFactory(), slug=slug, name="X")
    assert "slug" in error.value.message_dict
    assert not Organization.objects.exists()


def test_it_refuses_a_taken_slug(tenant):
    with pytest.raises(ValidationError, match="taken"):
        organization_create(creator=UserFactory(), slug=tenant.org.slug, name="Copy")
    assert Organization.objects.count() == 1


def test_it_refuses_an_unknown_timezone(db):
    with pytest.raises(ValidationError, match="IANA"):
        organization_create(creator=UserFactory(), slug="tz", name="Tz", timezone_name="Mars/Olympus")


def test_it_audits_organization_changes_with_before_and_after(tenant):
    organization_update(org=tenant.org, actor=tenant.admin.user, name="Acme Global")
    event = AuditEvent.objects.filter(verb="organization.updated").get()
    assert event.changes == [("name", "Acme", "Acme Global")]


def test_an_unchanged_save_writes_no_audit_event(tenant):
    organization_update(org=tenant.org, actor=tenant.admin.user, name=tenant.org.name)
    assert not AuditEvent.objects.filter(verb="organization.updated").exists()


def test_it_refuses_to_nest_a_team_inside_its_own_descendant(tenant):
    child = team_create(org=tenant.org, actor=tenant.admin.user, key="child", name="Child", parent=tenant.team)
    grandchild = team_create(org=tenant.org, actor=tenant.admin.user, key="gc", name="Grandchild", parent=child)
    with pytest.raises(ValidationError, match="cannot nest"):
        team_update(team=tenant.team, actor=tenant.admin.user, parent=grandchild)
    tenant.team.refresh_from_db()
    assert tenant.team.parent is None


def test_it_refuses_a_lead_or_parent_of_another_organization(tenant, stranger_tenant):
    with pytest.raises(ValidationError):
        team_create(org=tenant.org, actor=tenant.admin.user, key="x", name="X", lead=stranger_tenant.member)
    with pytest.raises(ValidationError):
        team_create(org=tenant.org, actor=tenant.admin.user, key="y", name="Y", parent=stranger_tenant.team)
    assert tenant.org.teams.count() == 1


def test_the_manage_team_permission_follows_the_lead(tenant):
    old_lead = tenant.lead
    assert old_lead.user.has_perm("governance.manage_team", tenant.team)
    team_update(team=tenant.team, actor=tenant.admin.user, lead=tenant.member)
    old_lead.user = old_lead.user.__class__.objects.get(pk=old_lead.user_id)  # fresh permission cache
    tenant.member.user = tenant.member.user.__class__.objects.get(pk=tenant.member.user_id)
    assert not old_lead.user.has_perm("governance.manage_team", tenant.team)
    assert tenant.member.user.has_perm("governance.manage_team", tenant.team)
    other_team = TeamFactory(organization=tenant.org)
    assert not tenant.member.user.has_perm("governance.manage_team", other_team)


def test_the_last_admin_cannot_be_demoted_or_deactivated(tenant):
    with pytest.raises(ValidationError, match="last admin"):
        membership_change_role(membership=tenant.admin, actor=tenant.admin.user, role=Role.MEMBER)
    with pytest.raises(ValidationError, match="last admin"):
        membership_set_active(membership=tenant.admin, actor=tenant.admin.user, active=False)
    second = MembershipFactory(organization=tenant.org, role=Role.ADMIN)
    membership_change_role(membership=tenant.admin, actor=second.user, role=Role.MEMBER)
    tenant.admin.refresh_from_db()
    assert tenant.admin.role == Role.MEMBER


def test_a_deactivated_admin_does_not_count_as_another_admin(tenant):
    other = MembershipFactory(organization=tenant.org, role=Role.ADMIN, is_active=False)
    with pytest.raises(ValidationError, match="last admin"):
        membership_set_active(membership=tenant.admin, actor=other.user, active=False)


def test_a_team_lead_or_kpi_owner_cannot_be_deactivated_until_replaced(tenant):
    with pytest.raises(ValidationError, match="Operations"):
        membership_set_active(membership=tenant.lead, actor=tenant.admin.user, active=False)
    team_update(team=tenant.team, actor=tenant.admin.user, lead=None)
    with pytest.raises(ValidationError, match="still owns 1 KPI.*Throughput"):
        membership_set_active(membership=tenant.lead, actor=tenant.admin.user, active=False)
    ownership_transfer_direct(kpi=tenant.kpi, to_owner=tenant.member, actor=tenant.admin.user, reason="Leaving")
    membership_set_active(membership=tenant.lead, actor=tenant.admin.user, active=False)
    tenant.lead.refresh_from_db()
    assert not tenant.lead.is_active


def test_team_members_can_only_come_from_the_organization(tenant, stranger_tenant):
    with pytest.raises(ValidationError):
        team_set_members(team=tenant.team, actor=tenant.admin.user, members=[stranger_tenant.member])
    assert stranger_tenant.member not in tenant.team.memberships.all()


def test_the_lead_stays_in_the_team_they_lead(tenant):
    team_set_members(team=tenant.team, actor=tenant.admin.user, members=[tenant.member])
    assert set(tenant.team.memberships.all()) == {tenant.member, tenant.lead}


def test_audit_events_carry_the_request_id(tenant):
    client = tenant.client(tenant.admin)
    client.post(
        f"/o/{tenant.org.slug}/settings/",
        {
            "name": "Renamed",
            "timezone": "Europe/Berlin",
            "business_days": ["mon"],
            "business_start": "08:00",
            "business_end": "16:00",
        },
        HTTP_X_REQUEST_ID="req-4711",
    )
    assert AuditEvent.objects.get(verb="organization.updated").request_id == "req-4711"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only trigger is PostgreSQL's")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE governance_auditevent SET verb = 'forged'",
        "DELETE FROM governance_auditevent",
    ],
)
def test_the_database_refuses_to_change_audit_events(tenant, statement):
    count = AuditEvent.objects.count()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditEvent.objects.count() == count
    assert not AuditEvent.objects.filter(verb="forged").exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the append-only trigger is PostgreSQL's")
def test_the_orm_cannot_change_audit_events_either(tenant):
    event = AuditEvent.objects.first()
    event.verb = "forged"
    with pytest.raises(DatabaseError), transaction.atomic():
        event.save()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.all().delete()
