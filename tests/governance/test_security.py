"""Browser security: the CSP on every kind of response, login throttling behind a proxy, and security events in the
audit log (logins, failed logins, lockouts, permission denials, token use). The stranger sees none of acme's."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.core import mail
from django.core.cache import cache
from django.test import Client, RequestFactory
from django.utils import timezone

from governance.models import AuditEvent, Membership, Role
from governance.security import client_ip
from tests.factories import PASSWORD
from tests.test_platform import assert_strict_csp

LOGIN = "/login/"


def login(username: str, password: str, *, ip: str = "198.51.100.7", forwarded: str | None = None, client=None):
    headers = {"REMOTE_ADDR": ip}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return (client or Client()).post(LOGIN, {"username": username, "password": password}, **headers)


def events(verb: str, **filters):
    return AuditEvent.objects.filter(verb=verb, **filters)


# --- Content-Security-Policy --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/login/", 200),
        ("/password-reset/", 200),
        ("/api/v1/docs", 200),
        ("/o/acme/teams/999999/", 404),
        ("/o/acme/members/", 403),
        ("/o/globex/", 404),
    ],
)
def test_every_kind_of_response_carries_the_strict_policy(tenant, stranger_tenant, url, status):
    client = Client() if url in ("/login/", "/password-reset/") else tenant.client(tenant.member)
    response = client.get(url)
    assert response.status_code == status
    assert_strict_csp(response, url)


def test_the_lockout_page_carries_the_strict_policy_too(tenant, settings):
    settings.AXES_FAILURE_LIMIT = 1
    response = login(tenant.member.user.email, "wrong")
    assert response.status_code == 429
    assert_strict_csp(response, LOGIN)


# --- login throttling ---------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_username_from_that_address(tenant):
    email = tenant.member.user.email
    for _ in range(4):
        response = login(email, "wrong")
        assert response.status_code == 200 and b"correct email" in response.content
    locked = login(email, "wrong")
    assert locked.status_code == 429
    html = locked.content.decode()
    assert "Too many failed attempts" in html and "paused for 15 minutes" in html
    assert 'name="username"' in html and email in html  # the form again, filled in

    # Even the right password is not checked while locked out, and no session starts.
    client = Client()
    right = login(email, PASSWORD, client=client)
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    # The lockout is per username and address: the same user from elsewhere, and others from here, log in.
    assert login(email, PASSWORD, ip="203.0.113.9").status_code == 302
    assert login(tenant.admin.user.email, PASSWORD).status_code == 302


def test_the_lockout_ends_after_the_cool_off(tenant):
    email = tenant.member.user.email
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            login(email, "wrong")
        assert login(email, PASSWORD).status_code == 429
    with time_machine.travel(start + timedelta(minutes=16), tick=False):
        assert login(email, PASSWORD).status_code == 302


def test_the_username_counts_whatever_its_case(tenant):
    variants = ["Member@acme.test", "MEMBER@ACME.TEST", " member@acme.test", "member@Acme.test", "member@acme.test"]
    for variant in variants:
        login(variant, "wrong")
    assert login("member@acme.test", PASSWORD).status_code == 429
    assert AccessAttempt.objects.get().username == "member@acme.test"


def test_a_success_clears_the_count(tenant):
    email = tenant.member.user.email
    for _ in range(4):
        login(email, "wrong")
    assert login(email, PASSWORD).status_code == 302
    for _ in range(4):
        login(email, "wrong")
    assert login(email, PASSWORD).status_code == 302


def test_behind_the_proxy_a_forged_forwarded_for_does_not_escape_the_lockout(tenant, settings):
    """The balancer appends the address it saw; whatever the client wrote before it changes nothing."""
    settings.TRUSTED_PROXY_COUNT = 1
    email = tenant.member.user.email
    for n in range(5):
        login(email, "wrong", ip="10.0.0.2", forwarded=f"192.0.2.{n}, 198.51.100.7")
    assert login(email, PASSWORD, ip="10.0.0.3", forwarded="192.0.2.99, 198.51.100.7").status_code == 429
    # Another client behind the same balancer is not locked out with the attacker.
    assert login(email, PASSWORD, ip="10.0.0.2", forwarded="203.0.113.50").status_code == 302
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "192.0.2.1", "10.0.0.1"),  # no proxy trusted: the header is the client's to write
        (1, None, "10.0.0.1"),  # came past the balancer
        (1, "198.51.100.7", "198.51.100.7"),
        (1, "192.0.2.1, 198.51.100.7", "198.51.100.7"),
        (1, "192.0.2.1,198.51.100.7 ", "198.51.100.7"),
        (2, "192.0.2.1, 198.51.100.7, 203.0.113.1", "198.51.100.7"),  # a CDN in front of the balancer
        (2, "198.51.100.7", "10.0.0.1"),
        (1, "192.0.2.1, not-an-address", "10.0.0.1"),
        (1, "192.0.2.1, 2001:db8::7", "2001:db8::7"),
    ],
)
def test_the_client_address_is_read_from_the_right(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    headers = {"REMOTE_ADDR": "10.0.0.1"} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})
    assert client_ip(RequestFactory().get("/", **headers)) == expected


# --- security events in the audit log -----------------------------------------------------------


def test_a_login_is_audited_in_every_organization_of_the_user(tenant, stranger_tenant):
    Membership.objects.create(organization=stranger_tenant.org, user=tenant.executive.user, role=Role.MEMBER)
    assert login(tenant.executive.user.email, PASSWORD, ip="198.51.100.7").status_code == 302
    logins = events("security.login", actor=tenant.executive.user)
    assert sorted(e.organization.slug for e in logins) == ["acme", "globex"]
    assert all(e.after["ip"] == "198.51.100.7" and e.object_id == str(tenant.executive.user.pk) for e in logins)


def test_failed_logins_and_the_lockout_are_audited_for_the_users_organization(tenant, stranger_tenant):
    for _ in range(5):
        login(tenant.member.user.email, "wrong", ip="198.51.100.7")
    failed = events("security.login_failed")
    assert failed.count() == 1 and failed.get().repeat.count == 5  # one entry a minute, with its count
    assert {(e.organization.slug, e.actor, e.object_id) for e in failed} == {("acme", None, str(tenant.member.user.pk))}
    assert failed.first().after["username"] == "member@acme.test" and failed.first().after["ip"] == "198.51.100.7"
    locked = events("security.login_locked_out").get()
    assert locked.organization == tenant.org and locked.after["failure_limit"] == 5
    assert "wrong" not in str(list(AuditEvent.objects.values("after")))  # passwords are never recorded

    # The stranger's admin sees none of it; acme's admin does, on the audit page.
    assert not events("security.login_failed", organization=stranger_tenant.org).exists()
    page = tenant.client(tenant.admin).get("/o/acme/audit/").content.decode()
    assert "security.login_failed" in page and "member@acme.test" in page
    globex_page = stranger_tenant.client(stranger_tenant.admin).get("/o/globex/audit/").content.decode()
    assert "member@acme.test" not in globex_page


def test_a_failed_login_for_an_unknown_email_belongs_to_no_organization(tenant):
    login("nobody@nowhere.test", "guess")
    event = events("security.login_failed").get()
    assert event.organization is None and event.object_id == "" and event.after["username"] == "nobody@nowhere.test"


def test_a_permission_denial_is_audited(tenant, stranger_tenant):
    assert tenant.client(tenant.member).get("/o/acme/members/").status_code == 403
    denied = events("security.permission_denied").get()
    assert denied.organization == tenant.org and denied.actor == tenant.member.user
    # The stranger probing acme's pages is recorded for acme, never shown to globex.
    assert stranger_tenant.client(stranger_tenant.admin).get("/o/acme/").status_code == 404
    assert events("security.access_denied", organization=tenant.org, actor=stranger_tenant.admin.user).exists()


def test_a_stranger_repeating_a_forbidden_url_leaves_one_entry_a_minute_with_its_count(tenant, stranger_tenant):
    stranger = stranger_tenant.client(stranger_tenant.admin)
    start = timezone.now().replace(second=5)
    with time_machine.travel(start, tick=False):
        for n in range(30):
            assert stranger.get(f"/o/acme/kpis/?try={n}").status_code == 404
    denied = events("security.access_denied", organization=tenant.org, actor=stranger_tenant.admin.user)
    assert denied.count() == 1
    assert denied.get().after["path"] == "/o/acme/kpis/" and denied.get().repeat.count == 30
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        stranger.get("/o/acme/kpis/")
    assert denied.count() == 2
    # Each person's and each kind's count is its own.
    assert tenant.client(tenant.member).get("/o/acme/members/").status_code == 403
    assert events("security.permission_denied").get().repeat.count == 1

    page = tenant.client(tenant.admin).get("/o/acme/audit/?verb=security.")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count("security.access_denied") == 2 and "30 times this minute" in text
    assert "security.access_denied" not in stranger.get("/o/globex/audit/").content.decode()


def api_get(token: str, path: str = "kpis", ip: str = "198.51.100.7"):
    return Client().get(f"/api/v1/{path}", HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=ip)


def test_token_use_is_audited_once_per_period_not_per_request(tenant, stranger_tenant, django_assert_max_num_queries):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            assert api_get(tenant.token).status_code == 200
    used = events("security.api_token_used")
    assert used.count() == 1
    event = used.get()
    assert event.organization == tenant.org and event.actor is None  # the organization's token: no person
    assert event.object_id == str(tenant.api_token.pk)
    assert event.after == {"prefix": tenant.api_token.prefix, "ip": "198.51.100.7", "path": "/api/v1/kpis"}
    with time_machine.travel(start + timedelta(minutes=59), tick=False):
        api_get(tenant.token)
    assert used.count() == 1
    with time_machine.travel(start + timedelta(minutes=61), tick=False):
        api_get(tenant.token)
        api_get(tenant.token)
    assert used.count() == 2
    # A personal token names its member as the actor.
    api_get(tenant.personal_token)
    assert events("security.api_token_used", actor=tenant.member.user).count() == 1
    assert not events("security.api_token_used", organization=stranger_tenant.org).exists()


def test_a_revoked_token_is_refused_and_audited_once_per_period(tenant):
    client = tenant.client(tenant.admin)
    client.post(f"/o/acme/api-tokens/{tenant.api_token.pk}/revoke/")
    tenant.api_token.refresh_from_db()
    assert tenant.api_token.revoked_at is not None
    for _ in range(3):
        assert api_get(tenant.token).status_code == 401
    refused = events("security.api_token_refused").get()
    assert refused.organization == tenant.org and refused.after["reason"] == "revoked"
    assert not events("security.api_token_used").exists()


def test_an_unknown_token_leaves_no_audit_row(tenant):
    before = AuditEvent.objects.count()
    assert api_get("stc_" + "x" * 43).status_code == 401
    assert AuditEvent.objects.count() == before


# --- request ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["r" * 65, "0" * 32 + "-" * 40, "two words", "id\x01", "é" * 10, "<script>"])
def test_a_malformed_request_id_is_replaced_and_a_foreign_id_answers_like_a_missing_one(tenant, stranger_tenant, given):
    client = tenant.client(tenant.admin)
    foreign = client.get(f"/o/acme/teams/{stranger_tenant.team.pk}/", HTTP_X_REQUEST_ID=given)
    missing = client.get("/o/acme/teams/999999/", HTTP_X_REQUEST_ID=given)

    assert (foreign.status_code, missing.status_code) == (404, 404)
    assert [t.name for t in foreign.templates] == [t.name for t in missing.templates]
    generated = foreign["X-Request-ID"]
    assert generated != given and len(generated) == 32 and int(generated, 16) >= 0
    assert events("security.foreign_id", organization=tenant.org).get().request_id == generated


def test_a_well_formed_request_id_is_kept(tenant, stranger_tenant):
    given = "Root=1-5759e988-bd862e3fe1be46a994272793"
    response = tenant.client(tenant.admin).get(f"/o/acme/teams/{stranger_tenant.team.pk}/", HTTP_X_REQUEST_ID=given)
    assert response.status_code == 404 and response["X-Request-ID"] == given
    assert events("security.foreign_id", organization=tenant.org).get().request_id == given


# --- password reset -------------------------------------------------------------------------------


def reset(email: str, ip: str = "198.51.100.7"):
    return Client().post("/password-reset/", {"email": email}, REMOTE_ADDR=ip)


@pytest.fixture
def reset_limits(settings):
    cache.clear()  # the throttle's counters
    settings.PASSWORD_RESET_EMAIL_LIMIT, settings.PASSWORD_RESET_IP_LIMIT = 3, 5
    yield
    cache.clear()


def test_password_reset_emails_to_one_address_are_throttled(tenant, reset_limits):
    answers = [reset(tenant.member.user.email, ip=f"198.51.100.{n}") for n in range(5)]  # from five addresses
    assert {(a.status_code, a.url) for a in answers} == {(302, "/password-reset/sent/")}
    assert len(mail.outbox) == 3 and {m.to[0] for m in mail.outbox} == {tenant.member.user.email}
    # Another address still gets its email.
    reset(tenant.admin.user.email, ip="203.0.113.9")
    assert len(mail.outbox) == 4


def test_password_reset_requests_from_one_client_are_throttled_whatever_the_address(tenant, reset_limits):
    emails = [tenant.admin.user.email, tenant.member.user.email, tenant.lead.user.email, tenant.executive.user.email]
    answers = [reset(email) for email in [*emails, "nobody@nowhere.test", *emails]]
    assert {(a.status_code, a.url) for a in answers} == {(302, "/password-reset/sent/")}  # the same answer
    assert len(mail.outbox) == 4  # the fifth request (no account) sent nothing either; then the limit
    assert len(reset(tenant.admin.user.email, ip="203.0.113.9").url) and len(mail.outbox) == 5
