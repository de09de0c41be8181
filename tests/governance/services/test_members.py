"""Members' roles and deactivation (governance.services.members)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from governance.models import Role
from governance.services.members import membership_change_role, membership_set_active
from governance.services.teams import team_update
from scorecards.services import ownership_transfer_direct
from tests.factories import MembershipFactory


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
