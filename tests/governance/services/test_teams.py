"""Teams: nesting, leads and members (governance.services.teams)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from governance.services.teams import team_create, team_set_members, team_update
from tests.factories import TeamFactory


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


def test_team_members_can_only_come_from_the_organization(tenant, stranger_tenant):
    with pytest.raises(ValidationError):
        team_set_members(team=tenant.team, actor=tenant.admin.user, members=[stranger_tenant.member])
    assert stranger_tenant.member not in tenant.team.memberships.all()


def test_the_lead_stays_in_the_team_they_lead(tenant):
    team_set_members(team=tenant.team, actor=tenant.admin.user, members=[tenant.member])
    assert set(tenant.team.memberships.all()) == {tenant.member, tenant.lead}
