"""Two-factor authentication for password logins (django-otp): a TOTP authenticator app, and ten one-time
recovery codes for when the phone is lost.

A password login of someone with a confirmed authenticator stops half way (the session remembers whom, for a few
minutes) until a code from the app or a recovery code is given. An organization may require a second factor of
its admins and executives: a page of it sends one without a verified session to set one up or to confirm.
Single sign-on logins are exempt: the identity provider enforces its own factors.
"""

from __future__ import annotations

import time

from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django_otp import devices_for_user
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from governance.models import Role, User
from governance.services.audit import audit_security_event

PENDING = "identity_two_factor_pending"  # session: {"user": pk, "next": url, "at": epoch seconds}
PENDING_SECONDS = 300
SSO_SESSION = "identity_sso_login"  # session flag set by a single sign-on login
RECOVERY_CODES = 10
LEADER_ROLES = (Role.ADMIN, Role.EXECUTIVE)


def has_second_factor(user: User) -> bool:
    return any(True for _ in devices_for_user(user, confirmed=True))


def authenticator(user: User) -> TOTPDevice:
    """The user's authenticator: the confirmed one, else the one being set up (made on first use)."""
    device = TOTPDevice.objects.filter(user=user).order_by("-confirmed", "pk").first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def new_recovery_codes(user: User) -> list[str]:
    """Ten fresh one-time codes; the old ones stop working."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name="Recovery codes")
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    device.token_set.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def enable(user: User, code: str) -> list[str] | None:
    """Confirms the authenticator being set up with a code from it; the recovery codes, or None if it is wrong."""
    device = authenticator(user)
    if not device.verify_token(code.strip().replace(" ", "")):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    audit_security_event(verb="security.two_factor_enabled", user=user, actor=user, after={})
    return new_recovery_codes(user)


def disable(user: User) -> None:
    for device in devices_for_user(user, confirmed=None):
        device.delete()
    audit_security_event(verb="security.two_factor_disabled", user=user, actor=user, after={})


def start_pending(session, user: User, next_url: str) -> None:
    session[PENDING] = {"user": user.pk, "next": next_url, "at": int(time.time())}


def pending_user(session) -> User | None:
    pending = session.get(PENDING) or {}
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    return User.objects.filter(pk=pending["user"], is_active=True).first()


class Throttled(Exception):
    """Wrong codes came too fast: django-otp makes each wait twice as long as the one before."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"Too many wrong codes: wait {seconds} second{'s' if seconds != 1 else ''} and try again.")
        self.seconds = seconds


def verify(user: User, code: str, *, facts: dict):
    """The device that accepts `code`: six digits from the app, or an unused recovery code (used up by this).
    Each device throttles wrong codes (django-otp); every try is audited."""
    code = code.strip().replace(" ", "").lower()
    kind, model = ("authenticator", TOTPDevice) if code.isdigit() else ("recovery_code", StaticDevice)
    device = model.objects.filter(user=user, confirmed=True).first()
    if device is not None:
        allowed, why = device.verify_is_allowed()
        if not allowed and (why or {}).get("locked_until"):
            wait = max(1, int((why["locked_until"] - timezone.now()).total_seconds()) + 1)
            raise Throttled(wait)
    accepted = device if device is not None and device.verify_token(code) else None
    audit_security_event(
        verb="security.two_factor_passed" if accepted else "security.two_factor_failed",
        user=user,
        actor=user if accepted else None,
        after={**facts, "with": kind},
    )
    return accepted


class TwoFactorRequiredMiddleware:
    """Under /o/<slug>/ of an organization that requires it, an admin or executive whose password session has no
    second factor goes to set one up (or to confirm it) before anything else."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        org, membership = getattr(request, "org", None), getattr(request, "membership", None)
        if org is None or membership is None or not org.require_two_factor or membership.role not in LEADER_ROLES:
            return None
        if request.user.is_verified() or request.session.get(SSO_SESSION):
            return None
        return redirect(f"{reverse('identity:two_factor')}?{urlencode({'next': request.get_full_path()})}")
