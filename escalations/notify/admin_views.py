"""The admins' pages on delivery: the Microsoft Teams webhook, and the delivery log of every sending channel."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from escalations.notify import health, selectors, services, teams, webhooks
from escalations.notify.forms import DeliveryLogForm, TeamsForm
from governance.access import admin_required
from governance.forms import apply_errors

PAGE_SIZE = 50


@admin_required
@require_http_methods(["GET", "POST"])
def teams_settings(request: HttpRequest) -> HttpResponse:
    """Connect (or replace) the Teams URL, send a test card, disconnect; each audited by its service."""
    hook = teams.teams_webhook(request.org)
    form, status = TeamsForm(), 200
    action = request.POST.get("action")
    if action == "connect":
        form = TeamsForm(request.POST)
        if form.is_valid():
            try:
                teams.teams_connect(org=request.org, actor=request.user, url=form.cleaned_data["url"])
            except ValidationError as e:
                apply_errors(form, e)
            else:
                messages.success(request, "Teams is connected. Send a test card to see it in the channel.")
                return redirect("escalations:teams_settings", org_slug=request.org.slug)
        status = 422
    elif action == "test" and hook:
        try:
            delivery = services.webhook_send_test(webhook=hook, actor=request.user)
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            webhooks.deliver_now(delivery)  # after the commit: no transaction waits on Teams
            if delivery.delivered_at:
                messages.success(request, f"Test card delivered: HTTP {delivery.status_code}.")
            else:
                messages.error(request, f"Test card failed: {health.plain_error(delivery.error)} It is retried.")
        return redirect("escalations:teams_settings", org_slug=request.org.slug)
    elif action == "disconnect":
        try:
            teams.teams_disconnect(org=request.org, actor=request.user)
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            messages.success(request, "Teams is disconnected: no more cards, and its URL is deleted.")
        return redirect("escalations:teams_settings", org_slug=request.org.slug)
    elif request.method == "POST":
        messages.error(request, "Unknown action.")
    recent = hook.deliveries.order_by("-created_at", "-id")[:10] if hook else []
    context = {"hook": hook, "form": form, "recent": recent, "plain": health.plain_error}
    return render(request, "escalations/teams.html", context, status=status)


@admin_required
@require_GET
def delivery_log(request: HttpRequest) -> HttpResponse:
    """Recent messages of one sending channel with their state, attempts and last error in plain words; a banner
    names every channel that keeps failing."""
    channels = health.sending_channels(request.org)
    data = request.GET.copy()
    data.setdefault("channel", channels[0][0])
    form = DeliveryLogForm(data, channels=channels)
    rows = selectors.delivery_log(org=request.org, channel=channels[0][0]).none()
    if form.is_valid():
        rows = selectors.delivery_log(
            org=request.org, channel=form.cleaned_data["channel"], state=form.cleaned_data["state"]
        )
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    for row in page:
        row.problem = health.plain_error(row.error) if row.error else ""
    context = {
        "form": form,
        "page": page,
        "channel": form.cleaned_data["channel"] if form.is_valid() else "",
        "channels": channels,
        "failing": health.failing_channels(org=request.org),
    }
    template = "escalations/delivery_log.html#rows" if request.htmx else "escalations/delivery_log.html"
    return render(request, template, context, status=200 if form.is_valid() else 422)
