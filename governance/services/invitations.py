"""Invitations: sending, revoking, resending and accepting one."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from governance import tenancy
from governance.models import (
    Invitation,
    Membership,
    Organization,
    Team,
    User,
    single_line,
)
from governance.services.audit import audit_log


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def invitation_create(
    *,
    org: Organization,
    actor: User,
    email: str,
    role: str,
    teams: Iterable[Team] = (),
    base_url: str | None = None,
) -> tuple[Invitation, str]:
    """Returns the invitation and its token; the token is never stored and cannot be shown again."""
    email = User.objects.normalize_email(email).lower()
    if Membership.objects.filter(organization=org, user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is already a member of {org}."})
    if Invitation.objects.filter(
        organization=org,
        email__iexact=email,
        accepted_at=None,
        revoked_at=None,
        expires_at__gt=timezone.now(),
    ).exists():
        raise ValidationError({"email": f"{email} already has a pending invitation; revoke it to send a new one."})
    # An expired open invitation would block the partial unique index; it is superseded, visibly.
    Invitation.objects.filter(organization=org, email__iexact=email, accepted_at=None, revoked_at=None).update(
        revoked_at=timezone.now()
    )
    teams = list(teams)
    if any(t.organization_id != org.pk for t in teams):
        raise ValidationError({"teams": "Pick teams of this organization."})
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=org,
        email=email,
        role=role,
        token_hash=hash_token(token),
        invited_by=actor,
        expires_at=timezone.now() + settings.INVITATION_TTL,
    )
    invitation.teams.set(teams)
    audit_log(org=org, actor=actor, verb="member.invited", obj=invitation, after={"email": email, "role": role})
    url = (base_url or settings.SITE_URL) + reverse("governance:invitation_accept", args=[token])
    context = {"invitation": invitation, "url": url}
    transaction.on_commit(
        lambda: send_mail(
            subject=single_line(f"You are invited to {org} on Steerco"),
            message=render_to_string("governance/email/invitation.txt", context),
            html_message=render_to_string("governance/email/invitation.html", context),
            from_email=None,
            recipient_list=[email],
        )
    )
    return invitation, token


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: User) -> Invitation:
    if invitation.state != "pending":
        raise ValidationError(f"This invitation is {invitation.state}; only pending invitations can be revoked.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_log(org=invitation.organization, actor=actor, verb="invitation.revoked", obj=invitation)
    return invitation


@transaction.atomic
def invitation_resend(*, invitation: Invitation, actor: User, base_url: str | None = None) -> tuple[Invitation, str]:
    """A new invitation (new token, new expiry) for an expired one's email, role and teams; it supersedes the
    expired one (see invitation_create)."""
    if invitation.state != "expired":
        raise ValidationError(f"This invitation is {invitation.state}; only expired invitations are sent again.")
    return invitation_create(
        org=invitation.organization,
        actor=actor,
        email=invitation.email,
        role=invitation.role,
        teams=invitation.teams.all(),
        base_url=base_url,
    )


def invitation_for_token(token: str) -> Invitation:
    """The usable invitation behind a token, or a ValidationError that says plainly why not; puts the request in
    the invitation's organization's tenant scope (governance.tenancy)."""
    digest = hash_token(token)
    with tenancy.scope(token=digest):  # the one invitation whose digest is presented, nothing else
        org_id = Invitation.objects.filter(token_hash=digest).values_list("organization_id", flat=True).first()
    if org_id is None:
        raise ValidationError("This invitation link is not valid. Ask an admin of the organization for a new one.")
    tenancy.switch(organization=org_id)
    invitation = Invitation.objects.select_related("organization").get(token_hash=digest)
    if invitation.state != "pending":
        message = {
            "accepted": "This invitation has already been used. Log in instead.",
            "revoked": "This invitation was withdrawn. Ask an admin of the organization for a new one.",
            "expired": "This invitation has expired. Ask an admin of the organization for a new one.",
        }[invitation.state]
        audit_log(
            org=invitation.organization,
            actor=None,
            verb="security.invitation_refused",
            obj=invitation,
            after={"state": invitation.state},
        )
        raise ValidationError(message)
    return invitation


def invitation_accept(*, token: str, user: User | None = None, name: str = "", password: str = "") -> Membership:
    """Accept as the logged-in `user` (whose email must match), or create the account from name + password."""
    invitation = invitation_for_token(token)  # outside the transaction: a refusal stays audited
    with transaction.atomic():
        # Lock the row so that two clicks on the same link cannot create two memberships.
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at:
            raise ValidationError("This invitation has already been used. Log in instead.")
        if user is None:
            if User.objects.filter(email__iexact=invitation.email).exists():
                raise ValidationError(f"An account for {invitation.email} exists; log in to accept the invitation.")
            user = User.objects.create_user(invitation.email, password, name=name)
        elif user.email.lower() != invitation.email.lower():
            raise ValidationError(f"This invitation is for {invitation.email}, but you are logged in as {user.email}.")
        membership, created = Membership.objects.get_or_create(
            organization=invitation.organization, user=user, defaults={"role": invitation.role}
        )
        if not created and not membership.is_active:
            raise ValidationError("Your membership of this organization was deactivated; ask an admin.")
        membership.teams.add(*invitation.teams.all())
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit_log(
            org=invitation.organization,
            actor=user,
            verb="invitation.accepted",
            obj=membership,
            after={"email": user.email, "role": membership.role},
        )
    return membership
