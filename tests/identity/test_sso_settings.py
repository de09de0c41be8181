"""The admins' single sign-on page: what it saves, what it refuses, and who may open it."""

from __future__ import annotations

import html

import pytest

from governance import tenancy
from governance.identity.models import SingleSignOn, SsoDomain
from governance.models import AuditEvent
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

FORM = {
    "issuer": "https://login.example.test/tenant-1/",
    "client_id": "steerco",
    "client_secret_name": "oidc_client_secret",
    "domains": "Example.test\n@sales.example.test\n",
    "groups_claim": "groups",
    "group_mapping": "steerco-admins = admin\nexecs = executive",
    "enabled": "on",
}


def url(tenant) -> str:
    return f"/o/{tenant.org.slug}/single-sign-on/"


def test_an_admin_connects_an_identity_provider_and_the_change_is_audited(tenant):
    response = tenant.client(tenant.admin).post(url(tenant), FORM)
    assert response.status_code == 302
    sso = SingleSignOn.objects.get(organization=tenant.org)
    assert sso.issuer == "https://login.example.test/tenant-1/"  # kept as written: `iss` must match it exactly
    assert sso.group_mapping == [["steerco-admins", "admin"], ["execs", "executive"]]
    assert sorted(SsoDomain.objects.filter(organization=tenant.org).values_list("domain", flat=True)) == [
        "example.test",
        "sales.example.test",
    ]
    [event] = AuditEvent.objects.filter(organization=tenant.org, verb="identity.sso_configured")
    assert event.after["domains"] == ["example.test", "sales.example.test"] and "value" not in str(event.after)
    page = tenant.client(tenant.admin).get(url(tenant)).content.decode()
    assert "not set" in page and "/sso/callback/" in page


def test_a_domain_another_organization_covers_is_refused_and_nothing_is_saved(tenant, stranger_tenant):
    assert tenant.client(tenant.admin).post(url(tenant), FORM).status_code == 302
    response = stranger_tenant.client(stranger_tenant.admin).post(url(stranger_tenant), FORM)
    assert response.status_code == 422
    assert "example.test is already covered by another organization" in response.content.decode()
    assert not SingleSignOn.objects.filter(organization=stranger_tenant.org).exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("group_mapping", "admins admin", 'Line 1: write "group = role"'),
        ("group_mapping", "admins = owner", "is neither a role"),
        ("group_mapping", "sales = team:nope", 'there is no team "nope"'),
        ("domains", "not a domain", "not a domain name"),
        ("issuer", "ftp://x", "Enter a valid URL"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(tenant, field, value, message):
    response = tenant.client(tenant.admin).post(url(tenant), {**FORM, field: value})
    assert response.status_code == 422 and message in html.unescape(response.content.decode())
    assert not SingleSignOn.objects.filter(organization=tenant.org).exists()


def test_only_admins_open_the_page(tenant):
    assert tenant.client(tenant.member).get(url(tenant)).status_code == 403
    outsider = MembershipFactory()
    with tenancy.scope(system=True):
        assert outsider.organization != tenant.org
    assert tenant.client(outsider).get(url(tenant)).status_code == 404
