"""Two-factor authentication for password logins: enrolment with an authenticator app, the login's second step,
recovery codes, and organizations that require it of admins and executives."""

from __future__ import annotations

import base64
import re
import time

import pytest
import time_machine
from django.test import Client
from django_otp.oath import TOTP

from governance.models import AuditEvent
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def code(key: str, steps_ahead: int = 0) -> str:
    """What the authenticator app shows (a later step: the server refuses a code it accepted once)."""
    totp = TOTP(base64.b32decode(key))
    totp.time = time.time() + 30 * steps_ahead
    return f"{totp.token():06d}"


def enrol(user) -> tuple[str, list[str]]:
    client = Client()
    client.force_login(user)
    key = re.search(r'id="totp-key"[^>]*>([A-Z2-7]+)<', client.get("/account/two-factor/").content.decode()).group(1)
    page = client.post("/account/two-factor/", {"code": code(key)}).content.decode()
    return key, re.findall(r"<li><code>([a-z2-7]{8})</code></li>", page)


def password_login(client: Client, user):
    return client.post("/login/", {"username": user.email, "password": PASSWORD})


def test_enrolment_then_a_password_login_asks_for_the_code(tenant):
    user = tenant.admin.user
    key, codes = enrol(user)
    assert len(codes) == 10
    assert AuditEvent.objects.filter(verb="security.two_factor_enabled", object_id=str(user.pk)).exists()

    client = Client()
    response = password_login(client, user)
    assert response.status_code == 302 and response["Location"] == "/login/verify/"
    assert "_auth_user_id" not in client.session  # half a login is no login
    assert client.post("/login/verify/", {"code": "000000"}).status_code == 422
    throttled = client.post("/login/verify/", {"code": code(key, 1)})  # right, but straight after a wrong one
    assert throttled.status_code == 429 and "wait 1 second" in throttled.content.decode()
    with time_machine.travel(time.time() + 2):
        response = client.post("/login/verify/", {"code": code(key, 1)})
    assert response.status_code == 302 and int(client.session["_auth_user_id"]) == user.pk
    assert AuditEvent.objects.filter(verb="security.two_factor_failed", object_id=str(user.pk)).exists()


def test_a_recovery_code_works_once(tenant):
    user = tenant.admin.user
    _, codes = enrol(user)
    first = Client()
    password_login(first, user)
    assert first.post("/login/verify/", {"code": codes[0].upper()}).status_code == 302
    again = Client()
    password_login(again, user)
    assert again.post("/login/verify/", {"code": codes[0]}).status_code == 422
    assert "_auth_user_id" not in again.session


def test_an_organization_requiring_it_sends_leaders_without_it_to_set_it_up(tenant):
    tenant.org.require_two_factor = True
    tenant.org.save()
    executive = Client()
    password_login(executive, tenant.executive.user)
    response = executive.get(f"/o/{tenant.org.slug}/")
    assert response.status_code == 302 and response["Location"].startswith("/account/two-factor/?next=")
    member = Client()
    password_login(member, tenant.member.user)
    assert member.get(f"/o/{tenant.org.slug}/").status_code == 200  # members are not asked

    key, _ = enrol(tenant.executive.user)
    verified = Client()
    password_login(verified, tenant.executive.user)
    verified.post("/login/verify/", {"code": code(key, 1)})
    assert verified.get(f"/o/{tenant.org.slug}/").status_code == 200


def test_turning_it_off_needs_a_code(tenant):
    user = tenant.member.user
    key, _ = enrol(user)
    client = Client()
    client.force_login(user)
    assert client.post("/account/two-factor/", {"code": "123456", "action": "off"}).status_code == 422
    with time_machine.travel(time.time() + 2):
        client.post("/account/two-factor/", {"code": code(key, 1), "action": "off"})
    assert password_login(Client(), user)["Location"] != "/login/verify/"
