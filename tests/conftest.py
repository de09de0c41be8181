from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from django.test import Client

from governance.models import ApiToken, Invitation, Membership, Organization, Role, Team
from governance.services import api_token_create, invitation_create, team_update
from scorecards.models import DataSource, ImportJob, KeyResult, Kpi, Objective, OwnershipTransfer, Scorecard
from scorecards.services import ownership_transfer_request
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory


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
    kpi: Kpi
    scorecard: Scorecard
    objective: Objective
    key_result: KeyResult
    transfer: OwnershipTransfer
    data_source: DataSource
    import_job: ImportJob
    api_token: ApiToken  # the organization's
    token: str  # its secret, for Authorization: Bearer
    personal_token: str  # the member's personal token

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
    kpi = KpiFactory(organization=org, team=team, owner=lead, key="ops.throughput", name="Throughput")
    scorecard = Scorecard.objects.create(organization=org, key="exec", name="Executive")
    scorecard.kpis.add(kpi)
    objective = Objective.objects.create(
        organization=org,
        key="o.grow",
        title="Grow",
        owner=executive,
        team=team,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 12, 31),
    )
    key_result = KeyResult.objects.create(
        organization=org, objective=objective, key="kr.manual", title="Manual", owner=member, start=0, target=10
    )
    transfer = ownership_transfer_request(kpi=kpi, requester=lead, to_owner=member, reason="Reorganisation")
    data_source = DataSource.objects.create(
        organization=org,
        key="warehouse",
        kind=DataSource.Kind.SQL,
        every=timedelta(hours=1),
        config={"dsn_env": "WAREHOUSE_DSN", "pulls": [{"kpi": kpi.key, "query": "select now() as at, 1 as value"}]},
    )
    import_job = ImportJob.objects.create(organization=org, created_by=admin.user, filename="data.csv")
    api_token, token = api_token_create(org=org, actor=admin.user, name="Warehouse loader")
    _, personal_token = api_token_create(org=org, actor=member.user, name="My script", membership=member)
    return Tenant(
        org,
        admin,
        executive,
        member,
        lead,
        team,
        invitation,
        kpi,
        scorecard,
        objective,
        key_result,
        transfer,
        data_source,
        import_job,
        api_token,
        token,
        personal_token,
    )


@pytest.fixture
def tenant(db) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def stranger_tenant(db) -> Tenant:
    """Another organization: nobody in it may see or touch anything of `tenant`."""
    return make_tenant("globex")
