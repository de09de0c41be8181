"""The notification pages (the list, read, settings) and the webhook pages (admins)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from escalations.models import (
    Notification,
    NotificationPreference,
    NotificationSettings,
    Webhook,
)
from escalations.notify import selectors, services, webhooks
from escalations.notify.forms import NotificationPreferencesForm, WebhookForm
from governance.access import admin_required, deny, get_for_org_or_404
from governance.forms import apply_errors

PAGE_SIZE = 50


@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.notifications(membership=request.membership), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    template = "escalations/notifications.html#list" if request.htmx else "escalations/notifications.html"
    return render(request, template, {"page": page})


@require_POST
def notification_read(request: HttpRequest, notification_id: int) -> HttpResponse:
    notification = get_for_org_or_404(request, Notification.objects.select_related("workstream__kpi"), notification_id)
    if notification.recipient_id != request.membership.pk:
        raise deny(request, "the notification's recipient")
    services.notification_mark_read(membership=request.membership, notification=notification)
    if request.htmx:
        notification.refresh_from_db(fields=["read_at"])
        context = {"n": notification, "oob_counts": True}
        return render(request, "escalations/notifications.html#notification", context)
    return redirect("escalations:notification_list", org_slug=request.org.slug)


@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponse:
    services.notification_mark_read(membership=request.membership)
    if request.htmx:
        page = Paginator(selectors.notifications(membership=request.membership), PAGE_SIZE).get_page(
            request.POST.get("page")
        )
        return render(request, "escalations/notifications.html#list", {"page": page, "oob_counts": True})
    messages.success(request, "Every notification is marked read.")
    return redirect("escalations:notification_list", org_slug=request.org.slug)


@require_http_methods(["GET", "POST"])
def notification_settings(request: HttpRequest) -> HttpResponse:
    """Which kinds reach me on which channel, quiet hours, and the daily digest; everything is on until switched
    off."""
    membership = request.membership
    off = set(
        NotificationPreference.objects.filter(membership=membership, enabled=False).values_list("kind", "channel")
    )
    chosen = NotificationSettings.objects.filter(membership=membership).first()
    form = NotificationPreferencesForm(
        request.POST or None,
        off=off,
        digest_kinds=set(chosen.digest_kinds) if chosen else set(),
        initial={"quiet_hours": bool(chosen and chosen.quiet_hours)},
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.notification_preferences_set(
                membership=membership,
                off=form.off(),
                quiet_hours=form.cleaned_data["quiet_hours"],
                digest_kinds=form.digest_kinds(),
            )
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, "Notification settings saved.")
            return redirect("escalations:notification_settings", org_slug=request.org.slug)
    status = 422 if form.errors else 200
    return render(request, "escalations/notification_settings.html", {"form": form}, status=status)


def _webhook_list_page(request: HttpRequest, form: WebhookForm, status: int = 200) -> HttpResponse:
    hooks = (
        Webhook.objects.for_org(request.org)
        .filter(teams=False)  # Teams has its own page
        .annotate(
            delivered=Count("deliveries", filter=Q(deliveries__delivered_at__isnull=False)),
            failed=Count("deliveries", filter=Q(deliveries__delivered_at=None, deliveries__attempts__gt=0)),
        )
        .order_by("-is_active", "name")
    )
    return render(request, "escalations/webhooks.html", {"hooks": hooks, "form": form}, status=status)


@admin_required
@require_http_methods(["GET", "POST"])
def webhook_list(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _webhook_list_page(request, WebhookForm())
    form = WebhookForm(request.POST)
    if form.is_valid():
        fields = {name: form.cleaned_data[name] for name in ("name", "url", "slack_format")}
        try:
            hook = services.webhook_create(org=request.org, actor=request.user, **fields)
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, f"Webhook {hook.name} created. Copy its signing secret to your receiver.")
            return redirect("escalations:webhook_detail", org_slug=request.org.slug, webhook_id=hook.pk)
    return _webhook_list_page(request, form, status=422)


@admin_required
@require_http_methods(["GET", "POST"])
def webhook_detail(request: HttpRequest, webhook_id: int) -> HttpResponse:
    """Edit and (de)activate, rotate the secret, send a test event, and the latest deliveries."""
    hook = get_for_org_or_404(request, Webhook.objects.filter(teams=False), webhook_id)
    initial = {name: getattr(hook, name) for name in WebhookForm.Meta.fields}
    form, status = WebhookForm(initial=initial, editing=True), 200
    action = request.POST.get("action")
    if action == "edit":
        form = WebhookForm(request.POST, editing=True)
        if form.is_valid():
            try:
                services.webhook_update(webhook=hook, actor=request.user, **form.cleaned_data)
            except ValidationError as e:
                apply_errors(form, e)
            else:
                messages.success(request, "Webhook saved.")
                return redirect("escalations:webhook_detail", org_slug=request.org.slug, webhook_id=hook.pk)
        status = 422
    elif action == "rotate":
        services.webhook_rotate_secret(webhook=hook, actor=request.user)
        messages.success(request, "New signing secret in effect: the old one no longer verifies. Update your receiver.")
        return redirect("escalations:webhook_detail", org_slug=request.org.slug, webhook_id=hook.pk)
    elif action == "test":
        try:
            delivery = services.webhook_send_test(webhook=hook, actor=request.user)
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            webhooks.deliver_now(delivery)  # after the commit: no transaction waits on the endpoint
            if delivery.delivered_at:
                messages.success(request, f"Test event delivered: HTTP {delivery.status_code}.")
            else:
                messages.error(request, f"Test event failed: {delivery.error}. It is retried like any other.")
        if request.htmx:
            return render(request, "escalations/webhook_detail.html#deliveries", _webhook_context(hook, form))
        return redirect("escalations:webhook_detail", org_slug=request.org.slug, webhook_id=hook.pk)
    elif request.method == "POST":
        messages.error(request, "Unknown action.")
    return render(request, "escalations/webhook_detail.html", _webhook_context(hook, form), status=status)


def _webhook_context(hook: Webhook, form: WebhookForm) -> dict:
    return {"hook": hook, "form": form, "deliveries": hook.deliveries.order_by("-created_at", "-id")[:50]}
