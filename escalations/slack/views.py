"""The Slack pages: the admins' (connect, disconnect, signing secret, test message, who is linked) and each
member's own (link code, unlink). Connecting is Slack's OAuth v2 flow: a `state` kept in the session and checked on
the way back, then the code exchanged for the bot token (services.installation_connect)."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from escalations.models import SlackInstallation, SlackLink
from escalations.slack import services
from governance.access import admin_required
from governance.models import Membership

STATE_KEY = "slack_oauth_state"


def _redirect_uri(request: HttpRequest) -> str:
    return settings.SITE_URL + reverse("escalations:slack_callback", args=[request.org.slug])


@admin_required
@require_GET
def slack_settings(request: HttpRequest) -> HttpResponse:
    installation = SlackInstallation.objects.for_org(request.org).first()
    members = Membership.objects.filter(organization=request.org, is_active=True).select_related("user", "slack_link")
    members = sorted(members, key=lambda m: m.user.name.lower())
    linked = [m for m in members if hasattr(m, "slack_link")]
    context = {
        "installation": installation,
        "linked": linked,
        "unlinked": [m for m in members if not hasattr(m, "slack_link")],
        "configured": bool(settings.SLACK_CLIENT_ID),
        "interactivity_url": settings.SITE_URL + reverse("slack_interactivity"),
        "command_url": settings.SITE_URL + reverse("slack_command"),
        "redirect_url": settings.SITE_URL + "/o/",
    }
    return render(request, "escalations/slack_settings.html", context)


@admin_required
@require_GET  # a link, not a form: the page's CSP (form-action 'self') would stop a form redirected to Slack
def slack_connect(request: HttpRequest) -> HttpResponse:
    if not settings.SLACK_CLIENT_ID:
        messages.error(request, "Set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET on the server first (docs/slack.md).")
        return redirect("escalations:slack_settings", org_slug=request.org.slug)
    state = secrets.token_urlsafe(24)
    request.session[STATE_KEY] = {"state": state, "org": request.org.pk}
    query = urlencode(
        {
            "client_id": settings.SLACK_CLIENT_ID,
            "scope": ",".join(services.SCOPES),
            "state": state,
            "redirect_uri": _redirect_uri(request),
        }
    )
    return redirect(f"{settings.SLACK_OAUTH_AUTHORIZE_URL}?{query}")


@admin_required
@require_GET
def slack_callback(request: HttpRequest) -> HttpResponse:
    expected = request.session.pop(STATE_KEY, None)
    back = redirect("escalations:slack_settings", org_slug=request.org.slug)
    if "error" in request.GET:
        messages.error(request, f"Slack did not install the app: {request.GET['error'][:100]}.")
        return back
    given = request.GET.get("state", "")
    if not expected or expected["org"] != request.org.pk or not secrets.compare_digest(expected["state"], given):
        messages.error(request, "This Slack answer does not match a connection started here; connect again.")
        return back
    try:
        installation = services.installation_connect(
            org=request.org, actor=request.user, code=request.GET.get("code", ""), redirect_uri=_redirect_uri(request)
        )
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return back
    linked = SlackLink.objects.for_org(request.org).count()
    messages.success(
        request, f"Connected to {installation.team_name or installation.team_id}; {linked} member(s) linked."
    )
    return back


@admin_required
@require_POST
def slack_disconnect(request: HttpRequest) -> HttpResponse:
    services.installation_disconnect(org=request.org, actor=request.user)
    messages.success(request, "Slack disconnected: its token and every member's link are gone.")
    return redirect("escalations:slack_settings", org_slug=request.org.slug)


@admin_required
@require_POST
def slack_signing_secret(request: HttpRequest) -> HttpResponse:
    try:
        services.signing_secret_set(org=request.org, actor=request.user, value=request.POST.get("signing_secret", ""))
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, "Signing secret saved.")
    return redirect("escalations:slack_settings", org_slug=request.org.slug)


@admin_required
@require_POST
def slack_test(request: HttpRequest) -> HttpResponse:
    try:
        services.test_message(org=request.org, membership=request.membership)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, "Test message sent to you in Slack.")
    return redirect("escalations:slack_settings", org_slug=request.org.slug)


@require_http_methods(["GET", "POST"])
def slack_account(request: HttpRequest) -> HttpResponse:
    """A member's own Slack link: the code to type in Slack, or unlink."""
    if request.method == "POST":
        services.unlink(membership=request.membership, actor=request.user)
        messages.success(request, "Your Slack account is unlinked: Steerco sends you nothing there any more.")
        return redirect("escalations:slack_account", org_slug=request.org.slug)
    installation = SlackInstallation.objects.for_org(request.org).first()
    link = SlackLink.objects.filter(membership=request.membership).first()
    code = services.link_code(request.membership) if installation and not link else ""
    return render(request, "escalations/slack_account.html", {"installation": installation, "link": link, "code": code})
