from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client

from governance.models import Invitation, Membership, Organization, Role, Team
from governance.services import invitation_create, team_update
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory


@dataclass
class Tenant:
    """One organization with a person in every role, a team with a lead, and a pending invitation."""

    org: Organization
    admin: Membership
    executive: Membership
    member: Membership
    lead: Membership
    team: Team
    invitation: Invitation

    def client(self, membership: Membership) -> Client:
        client = Client()
        client.force_login(membership.user)
        return client


def make_tenant(slug: str) -> Tenant:
    org = OrganizationFactory(slug=slug, name=slug.capitalize())
    admin = MembershipFactory(organization=org, role=Role.ADMIN, user__email=f"admin@{slug}.test")
    executive = MembershipFactory(organization=org, role=Role.EXECUTIVE, user__email=f"exec@{slug}.test")
    member = MembershipFactory(organization=org, role=Role.MEMBER, user__email=f"member@{slug}.test")
    lead = MembershipFactory(organization=org, role=Role.MEMBER, user__email=f"lead@{slug}.test")
    team = TeamFactory(organization=org, key="ops", name="Operations")
    team_update(team=team, actor=admin.user, lead=lead)
    member.teams.add(team)
    invitation, _ = invitation_create(org=org, actor=admin.user, email=f"invitee@{slug}.test", role=Role.MEMBER)
    return Tenant(org, admin, executive, member, lead, team, invitation)


@pytest.fixture
def tenant(db) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def stranger_tenant(db) -> Tenant:
    """Another organization: nobody in it may see or touch anything of `tenant`."""
    return make_tenant("globex")
