"""Read-only share links to one scorecard: created by executives, expiring, revocable, optionally behind a
passcode; every opening is logged, granted or refused."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from escalations.collaboration.models import ShareLink, ShareLinkView
from governance import tenancy
from governance.models import Membership, User
from governance.services.audit import audit_log
from scorecards.models import Scorecard


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_address(ip: str) -> str:
    """A keyed hash of the viewer's address: repeat visits are recognisable, the address is not kept."""
    return hmac.new(settings.SECRET_KEY.encode(), ip.encode(), hashlib.sha256).hexdigest()


@transaction.atomic
def share_link_create(
    *, by: Membership, scorecard: Scorecard, label: str, valid_for: timedelta, passcode: str = ""
) -> tuple[ShareLink, str]:
    """The link and its token, shown once (only its digest is stored)."""
    if not (by.is_executive or by.is_admin):
        raise PermissionDenied("Only executives and admins may share a scorecard outside the organization.")
    if not timedelta(hours=1) <= valid_for <= settings.SHARE_LINK_MAX_VALIDITY:
        raise ValidationError(
            f"A share link is valid for between an hour and {settings.SHARE_LINK_MAX_VALIDITY.days} days."
        )
    token = secrets.token_urlsafe(32)
    link = ShareLink.objects.create(
        organization=by.organization,
        scorecard=scorecard,
        label=label.strip() or scorecard.name,
        token_hash=hash_token(token),
        passcode_hash=make_password(passcode) if passcode else "",
        created_by=by.user,
        expires_at=timezone.now() + valid_for,
    )
    audit_log(
        org=by.organization,
        actor=by.user,
        verb="share_link.created",
        obj=link,
        after={"scorecard": scorecard.key, "expires_at": link.expires_at.isoformat(), "passcode": bool(passcode)},
    )
    return link, token


@transaction.atomic
def share_link_revoke(*, link: ShareLink, by: Membership) -> None:
    if not (by.is_executive or by.is_admin):
        raise PermissionDenied("Only executives and admins may revoke a share link.")
    # Guarded: revoking twice keeps the first revocation's time and person.
    if ShareLink.objects.filter(pk=link.pk, revoked_at=None).update(revoked_at=timezone.now(), revoked_by=by.user):
        audit_log(org=by.organization, actor=by.user, verb="share_link.revoked", obj=link)


class Refused(Exception):
    def __init__(self, outcome: str, message: str):
        super().__init__(message)
        self.outcome, self.message = outcome, message


@dataclass
class Opening:
    link: ShareLink
    needs_passcode: bool  # the link has one and this visitor has not given it yet
    unlocked_now: bool = False  # the right passcode was just given: remember it, then show the page


def share_link_open(*, token: str, passcode: str | None, unlocked: bool, ip: str, user: User | None) -> Opening:
    """The link behind `token`, checked and logged; puts the request in its organization's scope. `unlocked` says
    the visitor gave the passcode earlier in this session; `passcode` is one typed now. Raises Refused (logged) or
    ValidationError (no such link: nothing to log it on)."""
    digest = hash_token(token)
    with tenancy.scope(token=digest):  # the one link whose digest is presented, nothing else
        org_id = ShareLink.objects.filter(token_hash=digest).values_list("organization_id", flat=True).first()
    if org_id is None:
        raise ValidationError("This link is not valid. Ask the person who shared it for a new one.")
    tenancy.switch(organization=org_id)
    link = ShareLink.objects.select_related("organization", "scorecard").get(token_hash=digest)
    outcome = link.state(timezone.now())
    refusal = {
        "revoked": "This link was withdrawn by the organization. Ask the person who shared it for a new one.",
        "expired": "This link has expired. Ask the person who shared it for a new one.",
    }.get(outcome)
    if (
        refusal is None
        and link.passcode_hash
        and passcode is not None
        and not check_password(passcode, link.passcode_hash)
    ):
        outcome, refusal = ShareLinkView.Outcome.WRONG_PASSCODE, "That passcode is not right. Try again."
    if refusal is None and link.passcode_hash and not unlocked and passcode is None:
        return Opening(link, needs_passcode=True)  # the passcode page: nothing shown yet, nothing to log
    if refusal is None and passcode is not None:
        return Opening(link, needs_passcode=False, unlocked_now=True)  # the page that follows is the view logged
    ShareLinkView.objects.create(
        organization=link.organization,
        link=link,
        ip_hash=hash_address(ip),
        user=user if user is not None and user.is_authenticated else None,
        outcome=ShareLinkView.Outcome.SHOWN if refusal is None else outcome,
    )
    if refusal is not None:
        raise Refused(outcome, refusal)
    return Opening(link, needs_passcode=False)
