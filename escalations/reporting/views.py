"""The reports pages: governance health (whether breaches reach decisions, week by week), the team dependency
matrix and the scheduled reports for executives and admins; a KPI's what-if for anyone who may see it."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from escalations.models import ReportSend, ReportSubscription
from escalations.reporting import health, health_charts, matrix, subscriptions, whatif
from escalations.reporting.forms import SubscriptionForm
from governance.access import get_for_org_or_404, role_required
from governance.forms import apply_errors
from governance.models import Role
from governance.selectors import admin_missing_since
from scorecards.models import Kpi
from scorecards.selectors import visible_kpis

SENDS_SHOWN = 50  # the latest sends on the subscriptions page


class PeriodForm(forms.Form):
    weeks = forms.TypedChoiceField(choices=[(n, f"{n} weeks") for n in health.WEEK_CHOICES], coerce=int, required=False)

    def period(self) -> int:
        return (self.cleaned_data.get("weeks") if self.is_valid() else None) or health.DEFAULT_WEEKS


@role_required(Role.ADMIN, Role.EXECUTIVE)
@require_GET
def governance_health(request: HttpRequest) -> HttpResponse:
    count = PeriodForm(request.GET).period()
    weeks, metrics = health.health_report(org=request.org, weeks=count)
    charts = [(m, None if m.empty else health_charts.chart(m, weeks)) for m in metrics]
    # The week-by-week table: one row per week, newest first, one cell per metric.
    rows = [(week, [m.cells[i] for m in metrics]) for i, week in reversed(list(enumerate(weeks)))]
    escalations = next((m for m in metrics if m.key == "escalations"), None)
    recovery = next((m for m in metrics if m.key == "promised_recovery"), None)
    return render(
        request,
        "escalations/health.html",
        {
            "weeks": weeks,
            "count": count,
            "choices": health.WEEK_CHOICES,
            "metrics": metrics,
            "charts": charts,
            "rows": rows,
            "team_rows": [(s, int(sum(s.values))) for s in escalations.breakdown] if escalations else [],
            "promises": recovery.by_owner if recovery else [],
            "admin_missing": admin_missing_since(org=request.org),
        },
    )


@role_required(Role.ADMIN, Role.EXECUTIVE)
@require_GET
def dependency_matrix(request: HttpRequest) -> HttpResponse:
    return render(request, "escalations/dependency_matrix.html", matrix.team_matrix(org=request.org))


# --- scheduled reports ----------------------------------------------------------------------------------------------


def _subscription(request: HttpRequest, subscription_id: int) -> ReportSubscription:
    return get_for_org_or_404(request, ReportSubscription.objects.select_related("scorecard"), subscription_id)


@role_required(Role.ADMIN, Role.EXECUTIVE)
@require_GET
def subscription_list(request: HttpRequest) -> HttpResponse:
    subs = list(
        ReportSubscription.objects.for_org(request.org)
        .select_related("scorecard", "created_by")
        .prefetch_related("members__user")
    )
    sends = ReportSend.objects.for_org(request.org).select_related("subscription")[:SENDS_SHOWN]
    return render(request, "escalations/subscriptions.html", {"subs": subs, "sends": sends})


@role_required(Role.ADMIN, Role.EXECUTIVE)
@require_http_methods(["GET", "POST"])
def subscription_edit(request: HttpRequest, subscription_id: int | None = None) -> HttpResponse:
    instance = _subscription(request, subscription_id) if subscription_id else None
    form = SubscriptionForm(request.POST or None, instance=instance, org=request.org)
    if request.method == "POST" and form.is_valid():
        try:
            subscriptions.subscription_save(
                sub=form.save(), by=request.membership, members=list(form.cleaned_data["members"])
            )
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, f"{form.instance.name} saved.")
            return redirect("escalations:subscription_list", org_slug=request.org.slug)
    return render(request, "escalations/subscription_form.html", {"form": form, "sub": instance})


@role_required(Role.ADMIN, Role.EXECUTIVE)
@require_POST
def subscription_delete(request: HttpRequest, subscription_id: int) -> HttpResponse:
    sub = _subscription(request, subscription_id)
    subscriptions.subscription_delete(sub=sub, by=request.membership)
    messages.success(request, f"{sub.name} deleted: nothing more is sent.")
    return redirect("escalations:subscription_list", org_slug=request.org.slug)


class WhatIfForm(forms.Form):
    weeks = forms.IntegerField(min_value=1, max_value=8, initial=2, label="Stays off track for (weeks)")


@require_GET
def kpi_what_if(request: HttpRequest, kpi_id: int) -> HttpResponse:
    """Anyone who may see the KPI: what follows if it stays off track for a few weeks from now."""
    kpi = get_for_org_or_404(
        request,
        visible_kpis(Kpi.objects.for_org(request.org), request.membership).select_related(
            "organization", "team__lead__user", "owner__user"
        ),
        kpi_id,
    )
    form = WhatIfForm(request.GET or {"weeks": 2})
    result = (
        whatif.what_if(kpi=kpi, start=timezone.now(), weeks=form.cleaned_data["weeks"]) if form.is_valid() else None
    )
    return render(
        request, "escalations/what_if.html", {"kpi": kpi, "form": form, "w": result}, status=200 if result else 422
    )
