"""An organization whose identity provider deactivated its last admin: the deactivation goes through (the
provider's word is final), the organization is flagged, every active executive is told once, the governance health
page shows it, and the flag is cleared once an admin is back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from escalations.engine.sweeps import advance_escalations
from escalations.models import Notification
from governance.models import AuditEvent, Organization, Role, Scope
from governance.services.api_tokens import api_token_create
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db
MISSING = "Nobody can administer"


def scim(tenant, method: str, membership, body: dict | None = None):
    token = api_token_create(org=tenant.org, actor=tenant.admin.user, name="Identity provider", scopes=[Scope.SCIM])[1]
    return Client().generic(
        method,
        f"/scim/v2/Users/{membership.pk}",
        json.dumps(body) if body else "",
        content_type="application/scim+json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def reactivate(tenant, membership):
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": True}}],
    }
    assert scim(tenant, "PATCH", membership, body).status_code == 200


def told(org) -> list[str]:
    rows = Notification.objects.filter(organization=org, kind="admin_missing", channel="in_app")
    return sorted(rows.values_list("recipient__user__email", flat=True))


def health(tenant, who) -> str:
    return tenant.client(who).get(reverse("escalations:governance_health", args=[tenant.org.slug])).content.decode()


def test_the_last_admin_deprovisioned_is_deactivated_and_the_organization_flagged(tenant):
    assert scim(tenant, "DELETE", tenant.admin).status_code == 204

    tenant.admin.refresh_from_db()
    assert not tenant.admin.is_active
    flagged = Organization.objects.get(pk=tenant.org.pk).admin_missing_since
    assert flagged is not None
    [event] = AuditEvent.objects.filter(organization=tenant.org, verb="organization.admin_missing")
    assert event.after == {"last_admin": tenant.admin.user.email, "by": "scim"}


def test_an_admin_deprovisioned_while_another_remains_flags_nothing(tenant):
    MembershipFactory(organization=tenant.org, role=Role.ADMIN)
    assert scim(tenant, "DELETE", tenant.admin).status_code == 204

    advance_escalations()
    assert Organization.objects.get(pk=tenant.org.pk).admin_missing_since is None
    assert told(tenant.org) == []
    assert MISSING not in health(tenant, tenant.executive)


def test_every_active_executive_is_told_once_and_nobody_else(tenant, stranger_tenant):
    second = MembershipFactory(organization=tenant.org, role=Role.EXECUTIVE, user__email="cfo@tenant.test")
    MembershipFactory(organization=tenant.org, role=Role.EXECUTIVE, is_active=False)
    scim(tenant, "DELETE", tenant.admin)

    advance_escalations()
    advance_escalations()  # the next minute's sweep tells nobody twice

    assert told(tenant.org) == sorted([tenant.executive.user.email, second.user.email])
    assert told(stranger_tenant.org) == []
    [event] = AuditEvent.objects.filter(organization=tenant.org, verb="organization.admin_missing_notified")
    assert sorted(event.after["executives"]) == told(tenant.org)
    message = Notification.objects.filter(kind="admin_missing").first()
    assert message.subject == f"Nobody can administer {tenant.org.name}"
    assert "reactivate an admin" in message.body
    assert message.url == reverse("escalations:governance_health", args=[tenant.org.slug])

    late = MembershipFactory(organization=tenant.org, role=Role.EXECUTIVE, user__email="late@tenant.test")
    advance_escalations()
    assert late.user.email in told(tenant.org) and len(told(tenant.org)) == 3


def test_the_health_page_shows_it_until_an_admin_is_back(tenant, stranger_tenant):
    scim(tenant, "DELETE", tenant.admin)
    assert MISSING in health(tenant, tenant.executive)
    assert MISSING not in health(stranger_tenant, stranger_tenant.executive)

    reactivate(tenant, tenant.admin)
    assert MISSING not in health(tenant, tenant.executive)  # at once, before any sweep

    advance_escalations()
    assert Organization.objects.get(pk=tenant.org.pk).admin_missing_since is None
    [event] = AuditEvent.objects.filter(organization=tenant.org, verb="organization.admin_restored")
    assert event.after == {"admins": [tenant.admin.user.email]}
    assert told(tenant.org) == []  # restored before the sweep: nobody had to be told


def test_a_second_gap_is_told_again_even_before_the_sweep_saw_the_first_end(tenant):
    with time_machine.travel(datetime(2026, 12, 1, 9, tzinfo=UTC), tick=False):
        scim(tenant, "DELETE", tenant.admin)
        advance_escalations()
    with time_machine.travel(datetime(2026, 12, 2, 9, tzinfo=UTC), tick=False):
        reactivate(tenant, tenant.admin)
        scim(tenant, "DELETE", tenant.admin)  # gone again before the next sweep
        advance_escalations()

    assert Organization.objects.get(pk=tenant.org.pk).admin_missing_since == datetime(2026, 12, 2, 9, tzinfo=UTC)
    assert told(tenant.org) == [tenant.executive.user.email] * 2
    assert AuditEvent.objects.filter(organization=tenant.org, verb="organization.admin_missing").count() == 2
