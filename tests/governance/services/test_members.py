"""Members' roles and deactivation (governance.services.members)."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from governance import tenancy
from governance.models import Membership, Role
from governance.services.members import membership_change_role, membership_set_active
from governance.services.teams import team_update
from scorecards.services import ownership_transfer_direct
from tests.factories import MembershipFactory, OrganizationFactory


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


def test_an_admin_whose_account_is_deactivated_does_not_count_as_another_admin(tenant):
    MembershipFactory(organization=tenant.org, role=Role.ADMIN, user__is_active=False)
    with pytest.raises(ValidationError, match="last admin"):
        membership_change_role(membership=tenant.admin, actor=tenant.admin.user, role=Role.EXECUTIVE)
    tenant.admin.refresh_from_db()
    assert tenant.admin.role == Role.ADMIN


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin():
    org = OrganizationFactory()
    first, second = (MembershipFactory(organization=org, role=Role.ADMIN) for _ in range(2))
    start, refused = threading.Barrier(2), []

    def demote(membership, actor) -> None:
        try:
            with tenancy.scope(organization=org.pk), transaction.atomic():
                membership = Membership.objects.get(pk=membership.pk)
                start.wait()
                membership_change_role(membership=membership, actor=actor.user, role=Role.MEMBER)
                time.sleep(0.2)  # holds its locks while the other one reads the admins
        except ValidationError:
            refused.append(membership.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=pair) for pair in [(first, second), (second, first)]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 1
    assert Membership.objects.filter(organization=org, role=Role.ADMIN).count() == 1
