from __future__ import annotations

from dataclasses import dataclass

import pytest

from governance import tenancy
from governance.identity.services import sso_configure
from governance.models import Role
from governance.services.secrets import secret_set
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory
from tests.identity.oidc_provider.__main__ import CLIENT_SECRET
from tests.identity.oidc_provider.launch import Provider, running_provider

CALLBACK = "http://testserver/sso/callback/"  # the Django test client's host


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory) -> Provider:
    """django-oauth-toolkit's OpenID Connect provider, in its own process on loopback."""
    with running_provider(tmp_path_factory.mktemp("oidc-provider"), CALLBACK) as provider:
        yield provider


@dataclass
class SsoOrg:
    org: object
    admin: object
    sales: object


@pytest.fixture
def sso_org(db, oidc_provider) -> SsoOrg:
    """An organization whose single sign-on points at the loopback provider, covering acme-sso.test."""
    org = OrganizationFactory(slug="acme-sso", name="Acme SSO")
    admin = MembershipFactory(organization=org, role=Role.ADMIN, user__email="root@acme-sso.test")
    sales = TeamFactory(organization=org, key="sales", name="Sales")
    with tenancy.scope(organization=org.pk):  # an organization's secrets are only ever its own scope's
        secret_set(org=org, actor=admin.user, name="oidc_client_secret", value=CLIENT_SECRET)
    configure(org, admin.user, oidc_provider.issuer)
    return SsoOrg(org=org, admin=admin, sales=sales)


def configure(org, actor, issuer: str, *, client_id: str = "steerco", require_sso: bool = False):
    return sso_configure(
        org=org,
        actor=actor,
        issuer=issuer,
        client_id=client_id,
        client_secret_name="oidc_client_secret",
        domains=["acme-sso.test"],
        group_mapping=[
            ["steerco-admins", Role.ADMIN],
            ["steerco-execs", Role.EXECUTIVE],
            ["sales", "team:sales"],
        ],
        require_sso=require_sso,
    )
