"""Invitations through HTTP: sending by an admin, the emailed link, and every way to accept or be refused."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from governance.models import AuditEvent, Invitation, Membership, Role, User
from governance.services.invitations import invitation_create, invitation_revoke
from tests.conftest import Tenant
from tests.factories import PASSWORD, UserFactory

NEW_PASSWORD = "Blue-Harbor-Lantern-93"
LINK = re.compile(r"http://testserver/invitations/(?P<token>[A-Za-z0-9_-]+)/")


def invite(
    tenant: Tenant, email: str = "newcomer@acme.test", role: str = Role.MEMBER, teams=()
) -> tuple[Invitation, str]:
    return invitation_create(org=tenant.org, actor=tenant.admin.user, email=email, role=role, teams=teams)


def accept_url(token: str) -> str:
    return reverse("governance:invitation_accept", args=[token])


JOIN = "/invitations/join/"


def accept(client: Client, token: str, data: dict | None = None):
    """Opens the emailed link (which keeps the token in the session), then submits the invitation's page."""
    opened = client.get(accept_url(token))
    assert (opened.status_code, opened.url) == (302, JOIN)
    return client.post(JOIN, data or {})


def signup(name: str = "Nia Newcomer", password1: str = NEW_PASSWORD, password2: str | None = None) -> dict:
    return {"name": name, "password1": password1, "password2": password1 if password2 is None else password2}


def post_invite(tenant: Tenant, capture, **data):
    client = tenant.client(tenant.admin)
    with capture(execute=True) as callbacks:
        response = client.post(reverse("governance:member_list", kwargs={"org_slug": tenant.org.slug}), data)
    return response, callbacks


# --- sending --------------------------------------------------------------------------------------


def test_an_admin_invitation_sends_one_email_with_an_absolute_link_in_text_and_html(
    tenant, django_capture_on_commit_callbacks
):
    response, _ = post_invite(
        tenant,
        django_capture_on_commit_callbacks,
        email="newcomer@acme.test",
        role=Role.EXECUTIVE,
        teams=[tenant.team.pk],
    )

    assert response.status_code == 302
    assert response.url == reverse("governance:member_list", kwargs={"org_slug": tenant.org.slug})
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["newcomer@acme.test"]
    assert message.subject == "You are invited to Acme on Steerco"
    text_link = LINK.search(message.body)
    assert text_link, message.body
    assert len(message.alternatives) == 1
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert f'href="{text_link.group(0)}"' in html
    invitation = Invitation.objects.get(organization=tenant.org, email="newcomer@acme.test")
    assert invitation.role == Role.EXECUTIVE
    assert list(invitation.teams.all()) == [tenant.team]
    assert invitation.invited_by == tenant.admin.user
    assert AuditEvent.objects.filter(verb="member.invited", object_id=str(invitation.pk)).count() == 1


def test_the_token_is_stored_only_as_its_sha256(tenant, django_capture_on_commit_callbacks):
    post_invite(tenant, django_capture_on_commit_callbacks, email="newcomer@acme.test", role=Role.MEMBER)

    token = LINK.search(mail.outbox[0].body).group("token")
    invitation = Invitation.objects.get(email="newcomer@acme.test")
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()
    stored = [str(v) for v in Invitation.objects.filter(pk=invitation.pk).values().get().values()]
    stored += [str(v) for e in AuditEvent.objects.values("object_repr", "before", "after") for v in e.values()]
    assert not any(token in value for value in stored)


@pytest.mark.parametrize("email", ["member@acme.test", "Member@ACME.test"])
def test_it_refuses_to_invite_someone_who_already_is_a_member(tenant, django_capture_on_commit_callbacks, email):
    invitations = Invitation.objects.count()

    response, callbacks = post_invite(tenant, django_capture_on_commit_callbacks, email=email, role=Role.MEMBER)

    assert response.status_code == 422
    assert "member@acme.test is already a member of Acme." in response.content.decode()
    assert "email" in response.context["invite_form"].errors
    assert callbacks == []
    assert mail.outbox == []
    assert Invitation.objects.count() == invitations


def test_it_refuses_to_invite_an_address_with_a_pending_invitation(tenant, django_capture_on_commit_callbacks):
    invitations = list(Invitation.objects.values_list("pk", "revoked_at", "token_hash"))

    response, callbacks = post_invite(
        tenant, django_capture_on_commit_callbacks, email="invitee@acme.test", role=Role.ADMIN
    )

    assert response.status_code == 422
    assert "already has a pending invitation" in response.context["invite_form"].errors["email"][0]
    assert callbacks == []
    assert mail.outbox == []
    assert list(Invitation.objects.values_list("pk", "revoked_at", "token_hash")) == invitations


def test_a_new_invitation_supersedes_an_expired_open_one(tenant, django_capture_on_commit_callbacks):
    old = tenant.invitation
    Invitation.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    response, _ = post_invite(tenant, django_capture_on_commit_callbacks, email="invitee@acme.test", role=Role.MEMBER)

    assert response.status_code == 302
    old.refresh_from_db()
    assert old.revoked_at is not None
    assert old.accepted_at is None
    new = Invitation.objects.exclude(pk=old.pk).get(email="invitee@acme.test")
    assert new.state == "pending"
    assert [m.to for m in mail.outbox] == [["invitee@acme.test"]]


# --- accepting ----------------------------------------------------------------------------------


def test_a_new_person_accepts_creates_an_account_and_is_logged_in(tenant, django_capture_on_commit_callbacks):
    post_invite(
        tenant,
        django_capture_on_commit_callbacks,
        email="newcomer@acme.test",
        role=Role.EXECUTIVE,
        teams=[tenant.team.pk],
    )
    token = LINK.search(mail.outbox[0].body).group("token")
    client = Client()

    opened = client.get(accept_url(token))
    assert (opened.status_code, opened.url) == (302, JOIN)
    page = client.get(JOIN)
    assert page.status_code == 200
    assert "newcomer@acme.test" in page.content.decode() and "The invitation expires in 6" in page.content.decode()
    assert token not in page.content.decode()  # the form posts to an address without it
    response = client.post(JOIN, signup(name="Nia Newcomer"))

    overview = reverse("scorecards:overview", kwargs={"org_slug": tenant.org.slug})
    assert response.status_code == 302
    assert response.url == overview
    user = User.objects.get(email="newcomer@acme.test")
    assert user.name == "Nia Newcomer"
    assert user.check_password(NEW_PASSWORD)
    membership = Membership.objects.get(organization=tenant.org, user=user)
    assert membership.is_active
    assert membership.role == Role.EXECUTIVE
    assert list(membership.teams.all()) == [tenant.team]
    invitation = Invitation.objects.get(email="newcomer@acme.test")
    assert invitation.accepted_by == user
    assert invitation.accepted_at is not None
    event = AuditEvent.objects.get(verb="invitation.accepted")
    assert (event.organization, event.actor, event.object_id) == (tenant.org, user, str(membership.pk))
    assert event.after == {"email": "newcomer@acme.test", "role": Role.EXECUTIVE}
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.get(overview).status_code == 200


def test_it_rejects_a_used_token(tenant):
    invitation, token = invite(tenant)
    early = Client()
    early.get(accept_url(token))  # opened, then used by someone else before this visitor submits
    accept(Client(), token, signup())
    users = User.objects.count()

    for response in (Client().get(accept_url(token)), early.post(JOIN, signup(name="Second Try"))):
        assert response.status_code == 410
        assert "This invitation has already been used. Log in instead." in response.content.decode()

    assert User.objects.count() == users
    refusals = AuditEvent.objects.filter(verb="security.invitation_refused")
    assert refusals.count() == 1 and refusals.get().repeat.count == 2  # one entry a minute, counted
    assert {(e.object_id, e.actor, e.organization_id) for e in refusals} == {(str(invitation.pk), None, tenant.org.pk)}
    assert all(e.after == {"state": "accepted"} for e in refusals)


def _expire(invitation: Invitation, tenant: Tenant) -> None:
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def _revoke(invitation: Invitation, tenant: Tenant) -> None:
    invitation_revoke(invitation=invitation, actor=tenant.admin.user)


@pytest.mark.parametrize(
    ("spoil", "state", "message"),
    [
        (_expire, "expired", "This invitation has expired. Ask an admin of the organization for a new one."),
        (
            _revoke,
            "revoked",
            "This invitation was withdrawn. Ask an admin of the organization for a new one.",
        ),
    ],
)
def test_it_rejects_an_expired_or_revoked_token_and_audits_the_refusal(tenant, spoil, state, message):
    invitation, token = invite(tenant)
    early = Client()
    early.get(accept_url(token))  # opened before it expired or was revoked
    spoil(invitation, tenant)

    page = Client().get(accept_url(token))
    submit = early.post(JOIN, signup())

    for response in (page, submit):
        assert response.status_code == 410
        assert message in response.content.decode()
    assert not User.objects.filter(email="newcomer@acme.test").exists()
    refusals = AuditEvent.objects.filter(verb="security.invitation_refused")
    assert refusals.count() == 1 and refusals.get().repeat.count == 2  # one entry a minute, counted
    assert {(e.object_id, e.organization_id, str(e.after)) for e in refusals} == {
        (str(invitation.pk), tenant.org.pk, str({"state": state}))
    }


def test_a_forged_token_is_refused_without_an_audit_event(tenant):
    invite(tenant)
    events = AuditEvent.objects.count()

    get = Client().get(accept_url("forged-token-that-was-never-issued"))
    post = Client().post(JOIN, signup())  # no link opened

    assert (get.status_code, post.status_code) == (410, 410)
    assert "This invitation link is not valid." in get.content.decode()
    assert "Open the link in your invitation email to join." in post.content.decode()
    assert AuditEvent.objects.count() == events
    assert not User.objects.filter(email="newcomer@acme.test").exists()


def test_a_logged_in_user_with_another_email_cannot_accept(tenant, stranger_tenant):
    invitation, token = invite(tenant)
    client = stranger_tenant.client(stranger_tenant.member)

    response = accept(client, token)

    assert response.status_code == 409
    assert (
        "This invitation is for newcomer@acme.test, but you are logged in as member@globex.test."
        in response.content.decode()
    )
    assert not Membership.objects.filter(organization=tenant.org, user=stranger_tenant.member.user).exists()
    invitation.refresh_from_db()
    assert invitation.state == "pending"
    assert not AuditEvent.objects.filter(verb="invitation.accepted").exists()


def test_an_existing_account_that_is_not_logged_in_is_told_to_log_in(tenant):
    existing = UserFactory(email="newcomer@acme.test", name="Already Here")
    invitation, token = invite(tenant)

    response = accept(Client(), token, signup(name="Impostor"))

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "An account for newcomer@acme.test exists; log in to accept the invitation."
    ]
    assert User.objects.filter(email__iexact="newcomer@acme.test").count() == 1
    existing.refresh_from_db()
    assert existing.name == "Already Here"
    assert existing.check_password(PASSWORD)
    assert not Membership.objects.filter(organization=tenant.org, user=existing).exists()
    invitation.refresh_from_db()
    assert invitation.state == "pending"


@pytest.mark.parametrize(
    ("data", "field", "error"),
    [
        (
            signup(password1=NEW_PASSWORD, password2=NEW_PASSWORD + "x"),
            "password2",
            "The two passwords differ.",
        ),
        (
            signup(password1="Xq7-z"),
            "password1",
            "This password is too short. It must contain at least 8 characters.",
        ),
    ],
)
def test_an_invalid_password_shows_form_errors_and_creates_nothing(tenant, data, field, error):
    invitation, token = invite(tenant)
    users, memberships = User.objects.count(), Membership.objects.count()

    response = accept(Client(), token, data)

    assert response.status_code == 200
    assert error in response.context["form"].errors[field]
    assert error in response.content.decode()
    assert (User.objects.count(), Membership.objects.count()) == (users, memberships)
    invitation.refresh_from_db()
    assert invitation.state == "pending"
    assert not AuditEvent.objects.filter(verb="invitation.accepted").exists()


@pytest.mark.parametrize("stored_email", ["keep", "Casey@Acme.TEST"])
def test_a_logged_in_user_accepts_an_invitation_written_in_another_case(tenant, stored_email):
    user = UserFactory(email="casey@acme.test")
    invitation, token = invite(tenant, email="Casey@Acme.test", role=Role.EXECUTIVE)
    if stored_email != "keep":  # a row written before addresses were normalised
        Invitation.objects.filter(pk=invitation.pk).update(email=stored_email)
    client = Client()
    client.force_login(user)

    response = accept(client, token)

    assert response.status_code == 302
    membership = Membership.objects.get(organization=tenant.org, user=user)
    assert (membership.role, membership.is_active) == (Role.EXECUTIVE, True)
    assert User.objects.filter(email__iexact="casey@acme.test").count() == 1
    invitation.refresh_from_db()
    assert invitation.accepted_by == user


def test_after_the_emailed_link_no_request_carries_the_token_even_through_the_login_page(tenant):
    existing = UserFactory(email="newcomer@acme.test")
    invitation, token = invite(tenant)
    client = Client()
    urls = [client.get(accept_url(token)).url]  # the one request with the token: it moves it into the session

    page = client.get(JOIN)
    login_link = re.search(r'href="(/login/[^"]*)"', page.content.decode()).group(1).replace("&amp;", "&")
    urls.append(login_link)
    logged_in = client.post(login_link, {"username": existing.email, "password": PASSWORD})
    urls.append(logged_in.url)
    joined = client.post(logged_in.url)
    urls.append(joined.url)

    assert urls == [JOIN, f"/login/?next={JOIN}", JOIN, f"/o/{tenant.org.slug}/"]
    assert not any(token in url for url in urls)
    assert Membership.objects.filter(organization=tenant.org, user=existing, is_active=True).exists()
    assert "invitation_token" not in client.session  # forgotten once used


def test_an_invitation_lasts_the_configured_time(tenant, settings):
    settings.INVITATION_TTL = timedelta(days=2)
    invitation, token = invite(tenant)
    assert abs(invitation.expires_at - invitation.created_at - timedelta(days=2)) < timedelta(seconds=1)
    with time_machine.travel(invitation.expires_at + timedelta(seconds=1)):
        response = Client().get(accept_url(token))
    assert response.status_code == 410
    assert "This invitation has expired. Ask an admin of the organization for a new one." in response.content.decode()


def test_an_admin_sends_an_expired_invitation_again(tenant, django_capture_on_commit_callbacks):
    old = tenant.invitation
    old.teams.set([tenant.team])
    Invitation.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(days=1))
    admin = tenant.client(tenant.admin)
    members = reverse("governance:member_list", kwargs={"org_slug": tenant.org.slug})
    page = admin.get(members).content.decode()
    assert "Expired without an answer" in page and "invitee@acme.test" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            reverse("governance:invitation_resend", kwargs={"org_slug": tenant.org.slug, "invitation_id": old.pk})
        )

    assert (response.status_code, response.url) == (302, members)
    new = Invitation.objects.get(email="invitee@acme.test", revoked_at=None)
    assert new.pk != old.pk and (new.role, list(new.teams.all())) == (old.role, [tenant.team])
    token = LINK.search(mail.outbox[0].body).group("token")
    assert accept(Client(), token, signup()).status_code == 302
    assert Membership.objects.get(organization=tenant.org, user__email="invitee@acme.test").teams.get() == tenant.team
    assert "Expired without an answer" not in admin.get(members).content.decode()
