"""Single sign-on against a real OpenID Connect provider on loopback (django-oauth-toolkit, tests/identity/
oidc_provider): the authorization code flow with PKCE end to end, and every forged or foreign answer refused."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client

from governance import tenancy
from governance.models import AuditEvent, Membership, Role, User
from tests.factories import PASSWORD, MembershipFactory
from tests.identity.conftest import configure

pytestmark = pytest.mark.django_db(transaction=True)


def start(client: Client, email: str):
    """The login page's email step, up to the redirect to the provider; returns the authorization request's URL."""
    start = start_url(client, email)
    assert start.startswith("/sso/start/")
    response = client.get(start)
    assert response.status_code == 302
    return response["Location"]


def start_url(client: Client, email: str) -> str:
    """The link of the login page's "continue to your identity provider" step."""
    page = client.get("/login/", {"email": email}).content.decode()
    return html.unescape(re.search(r'id="sso-continue" href="([^"]+)"', page).group(1))


def sign_in(client: Client, provider, email: str, *groups: str, name: str = ""):
    authorize = start(client, email)
    at_provider = provider.signed_in(email, *groups, name=name)
    answer = at_provider.get(authorize, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    callback = urlparse(answer.headers["Location"])
    assert callback.path == "/sso/callback/"
    return client.get(f"{callback.path}?{callback.query}")


def events(org, verb: str) -> list[AuditEvent]:
    with tenancy.scope(organization=org.pk):
        return list(AuditEvent.objects.filter(organization=org, verb=verb))


def membership(org, email: str) -> Membership:
    with tenancy.scope(organization=org.pk):
        return (
            Membership.objects.select_related("user").prefetch_related("teams").get(organization=org, user__email=email)
        )


def test_the_authorization_request_carries_state_nonce_and_an_s256_pkce_challenge(sso_org, oidc_provider):
    query = parse_qs(urlparse(start(Client(), "ceo@acme-sso.test")).query)
    assert query["response_type"] == ["code"] and query["client_id"] == ["steerco"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["login_hint"] == ["ceo@acme-sso.test"]


def test_code_flow_with_pkce_signs_in_and_makes_a_member_just_in_time(sso_org, oidc_provider):
    client = Client()
    response = sign_in(client, oidc_provider, "ceo@acme-sso.test", "steerco-execs", "sales", name="Casey Exec")
    assert response.status_code == 302
    assert client.get("/o/acme-sso/").status_code in (200, 302)
    joined = membership(sso_org.org, "ceo@acme-sso.test")
    assert joined.role == Role.EXECUTIVE and joined.user.name == "Casey Exec"
    assert [t.key for t in joined.teams.all()] == ["sales"]
    assert int(client.session["_auth_user_id"]) == joined.user_id
    assert [e.after["role"] for e in events(sso_org.org, "identity.sso_member_joined")] == [Role.EXECUTIVE]
    assert len(events(sso_org.org, "identity.sso_login")) == 1


def test_roles_and_mapped_teams_are_re_synced_at_every_login(sso_org, oidc_provider):
    sign_in(Client(), oidc_provider, "vp@acme-sso.test", "steerco-admins", "sales")
    assert membership(sso_org.org, "vp@acme-sso.test").role == Role.ADMIN
    sign_in(Client(), oidc_provider, "vp@acme-sso.test")  # the provider took both groups away
    synced = membership(sso_org.org, "vp@acme-sso.test")
    assert synced.role == Role.MEMBER and list(synced.teams.all()) == []
    [change] = events(sso_org.org, "identity.sso_role_synced")
    assert (change.before, change.after["role"]) == ({"role": Role.ADMIN}, Role.MEMBER)
    assert len(events(sso_org.org, "identity.sso_teams_synced")) == 2


def test_no_group_means_member(sso_org, oidc_provider):
    sign_in(Client(), oidc_provider, "new@acme-sso.test", "some-other-group")
    assert membership(sso_org.org, "new@acme-sso.test").role == Role.MEMBER


def refused(response, reason: str, sso_org) -> None:
    assert response.status_code == 403
    assert reason in response.content.decode()
    assert "_auth_user_id" not in response.wsgi_request.session
    [event] = events(sso_org.org, "security.sso_login_refused")
    assert reason in event.after["reason"]


def test_a_tampered_id_token_is_refused(sso_org, oidc_provider):
    configure(sso_org.org, sso_org.admin.user, oidc_provider.issuer, client_id="tampered")
    response = sign_in(Client(), oidc_provider, "mallory@acme-sso.test")
    refused(response, "ID token failed verification", sso_org)
    assert not User.objects.filter(email="mallory@acme-sso.test").exists()


def test_an_id_token_with_another_nonce_is_refused(sso_org, oidc_provider):
    configure(sso_org.org, sso_org.admin.user, oidc_provider.issuer, client_id="wrong-nonce")
    refused(sign_in(Client(), oidc_provider, "replay@acme-sso.test"), "Nonce verification failed", sso_org)


def test_an_id_token_from_a_foreign_issuer_is_refused(sso_org, oidc_provider):
    configure(sso_org.org, sso_org.admin.user, oidc_provider.issuer, client_id="foreign-issuer")
    refused(sign_in(Client(), oidc_provider, "eve@acme-sso.test"), "issued by another issuer", sso_org)


def test_an_address_of_a_domain_not_covered_is_refused(sso_org, oidc_provider):
    client = Client()
    authorize = start(client, "ceo@acme-sso.test")
    # At the provider someone else signs in: their address is no domain the organization covers.
    answer = oidc_provider.signed_in("intruder@elsewhere.test", "steerco-admins").get(authorize, allow_redirects=False)
    callback = urlparse(answer.headers["Location"])
    response = client.get(f"{callback.path}?{callback.query}")
    refused(response, "elsewhere.test is not a domain", sso_org)
    assert not User.objects.filter(email="intruder@elsewhere.test").exists()


def test_a_callback_with_a_state_this_browser_did_not_start_is_refused(sso_org, oidc_provider):
    authorize = start(Client(), "ceo@acme-sso.test")
    answer = oidc_provider.signed_in("ceo@acme-sso.test").get(authorize, allow_redirects=False)
    callback = urlparse(answer.headers["Location"])
    response = Client().get(f"{callback.path}?{callback.query}")  # another browser replays the redirect
    assert response.status_code == 403 and "state this browser did not start" in response.content.decode()


def test_an_address_no_single_sign_on_covers_gets_the_password_form(sso_org):
    response = Client().get("/login/", {"email": "someone@example.test"})
    assert response.status_code == 200 and 'name="password"' in response.content.decode()


def test_sso_required_refuses_the_password_form_and_reset_but_not_break_glass(
    sso_org, oidc_provider, settings, mailoutbox
):
    configure(sso_org.org, sso_org.admin.user, oidc_provider.issuer, require_sso=True)
    member = MembershipFactory(organization=sso_org.org, user__email="pat@acme-sso.test")
    response = Client().post("/login/", {"username": member.user.email, "password": PASSWORD})
    assert response.status_code == 200
    assert "Acme SSO requires single sign-on" in response.content.decode()
    assert "_auth_user_id" not in response.wsgi_request.session
    Client().post("/password-reset/", {"email": member.user.email})
    assert mailoutbox == []
    assert events(sso_org.org, "security.password_login_refused")
    assert events(sso_org.org, "security.password_reset_refused")

    settings.SSO_BREAK_GLASS_EMAILS = [sso_org.admin.user.email]
    response = Client().post("/login/", {"username": sso_org.admin.user.email, "password": PASSWORD})
    assert response.status_code == 302


def test_a_break_glass_admin_reaches_the_password_form_when_the_provider_is_down(sso_org, settings):
    configure(sso_org.org, sso_org.admin.user, "http://127.0.0.1:9", require_sso=True)  # nothing listens there
    settings.SSO_BREAK_GLASS_EMAILS = [sso_org.admin.user.email]
    client = Client()
    failed = client.get(start_url(client, "root@acme-sso.test"))
    assert failed.status_code == 403 and "discovery document" in failed.content.decode()
    assert 'href="/login/?password=1"' in failed.content.decode()
    form = client.get("/login/", {"password": "1", "email": sso_org.admin.user.email})
    assert 'name="password"' in form.content.decode()
    assert client.post("/login/", {"username": sso_org.admin.user.email, "password": PASSWORD}).status_code == 302
