"""Login security: the client's address behind proxies, login throttling (django-axes), password reset throttling
and login audit events."""

from __future__ import annotations

import hashlib
import ipaddress
import logging

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.auth.views import PasswordResetView
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from governance.models import User
from governance.services.audit import audit_security_event

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest | None) -> str | None:
    """The address of the client, as the outermost of our TRUSTED_PROXY_COUNT reverse proxies saw it.

    Each proxy appends the address it received the request from to X-Forwarded-For, so the trustworthy entry is
    the TRUSTED_PROXY_COUNT-th from the right; anything left of it is the client's to write. django-ipware's
    `proxy_count` counts the proxies *listed in* the header and, in strict mode, answers None when a client sends a
    header of its own: every spoofer would then share one throttling bucket with nobody's address in the audit.
    Reading from the right is the rule that a spoofed header cannot bend.
    """
    if request is None:
        return None
    remote = request.META.get("REMOTE_ADDR") or None
    hops = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote  # fewer entries than proxies: the request did not come through them all
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def login_username(request: HttpRequest | None, credentials: dict | None) -> str | None:
    """The username axes counts failures under: emails compare case-insensitively, so one user is one bucket."""
    username = (credentials or {}).get("username")
    if username is None and request is not None:
        username = request.POST.get(settings.AXES_USERNAME_FORM_FIELD)
    return username.strip().lower()[:150] if isinstance(username, str) else None


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """The login page again, saying why the password was not even checked and how long to wait."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {
        "form": AuthenticationForm(request, initial={"username": login_username(request, credentials) or ""}),
        "next": request.POST.get("next", "") if request.method == "POST" else request.GET.get("next", ""),
        "locked_out": True,
        "cooloff_minutes": minutes,
    }
    return render(request, "registration/login.html", context, status=429)


def within_limit(key: str, limit: int) -> bool:
    """Counts one more request under `key` for PASSWORD_RESET_WINDOW; whether the count is still within `limit`."""
    window = int(settings.PASSWORD_RESET_WINDOW.total_seconds())
    cache.add(key, 0, window)  # the window starts with the first request, and is not extended by later ones
    try:
        return cache.incr(key) <= limit
    except ValueError:  # expired between add and incr: this request is the first of a new window
        cache.add(key, 1, window)
        return True


class ThrottledPasswordResetView(PasswordResetView):
    """Django's password reset, sending at most PASSWORD_RESET_EMAIL_LIMIT emails per address and
    PASSWORD_RESET_IP_LIMIT requests per client address a window, so that nobody can bomb an inbox or probe
    addresses by the thousand. Over the limit the answer is the same "check your inbox" page, whether or not the
    address has an account: it tells nothing either way."""

    def form_valid(self, form):
        email = form.cleaned_data["email"].strip().lower()
        digest = hashlib.sha256(email.encode()).hexdigest()  # no address in the cache's keys
        by_email = within_limit(f"password-reset:email:{digest}", settings.PASSWORD_RESET_EMAIL_LIMIT)
        by_ip = within_limit(f"password-reset:ip:{client_ip(self.request)}", settings.PASSWORD_RESET_IP_LIMIT)
        if by_email and by_ip:
            return super().form_valid(form)
        logger.warning("Password reset throttled for an address from %s", client_ip(self.request))
        return HttpResponseRedirect(self.get_success_url())


def request_facts(request: HttpRequest | None) -> dict:
    if request is None:
        return {}
    return {"ip": client_ip(request), "user_agent": request.META.get("HTTP_USER_AGENT", "")[:200]}


def _user_for(username: str | None) -> User | None:
    if not username:
        return None
    return User.objects.filter(email__iexact=username).first()


@receiver(user_logged_in, dispatch_uid="governance.security.logged_in")
def audit_login(sender, request: HttpRequest | None, user: User, **kwargs) -> None:
    audit_security_event(verb="security.login", user=user, actor=user, after=request_facts(request))


@receiver(user_login_failed, dispatch_uid="governance.security.login_failed")
def audit_login_failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    username = login_username(request, credentials)
    audit_security_event(
        verb="security.login_failed",
        user=_user_for(username),
        after={"username": username, **request_facts(request)},
    )


@receiver(user_locked_out, dispatch_uid="governance.security.locked_out")
def audit_lockout(sender, request: HttpRequest | None, username: str | None, **kwargs) -> None:
    logger.warning("Login locked out for %s from %s", username, client_ip(request))
    audit_security_event(
        verb="security.login_locked_out",
        user=_user_for(username),
        after={"username": username, "failure_limit": settings.AXES_FAILURE_LIMIT, **request_facts(request)},
    )
