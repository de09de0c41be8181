"""Suggested dependencies: the list (admins see every one, others those between KPIs they may see), the evidence
page, and the owners' answers (confirm, dismiss with a reason)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from dependencies import evidence, suggestions
from dependencies.models import Dependency, SuggestedDependency
from governance.access import get_for_org_or_404
from scorecards.models import Kpi
from scorecards.selectors import visible_kpis


class ConfirmForm(forms.Form):
    kind = forms.ChoiceField(choices=Dependency.Kind.choices, initial=Dependency.Kind.DRIVES_DEMAND)


class DismissForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


def _suggestions(request: HttpRequest):
    qs = SuggestedDependency.objects.for_org(request.org).select_related(
        "upstream__team", "upstream__owner__user", "downstream__team", "downstream__owner__user", "decided_by"
    )
    if not request.membership.is_admin:  # a suggestion shows both its KPIs: both must be visible
        visible = visible_kpis(Kpi.objects.for_org(request.org), request.membership)
        qs = qs.filter(upstream__in=visible, downstream__in=visible)
    return qs


@require_GET
def suggestion_list(request: HttpRequest) -> HttpResponse:
    rows = list(_suggestions(request).order_by("-computed_at", "pk"))
    open_ = sorted(
        (s for s in rows if s.state == SuggestedDependency.State.SUGGESTED), key=lambda s: -abs(s.coefficient)
    )
    answered = [s for s in rows if s.state != SuggestedDependency.State.SUGGESTED]
    return render(request, "dependencies/suggestions.html", {"open": open_, "answered": answered})


def _detail(request: HttpRequest, s: SuggestedDependency, confirm=None, dismiss=None, status: int = 200):
    config = suggestions.Settings.current()
    now = timezone.now()
    levels, start = suggestions.daily_series(request.org, [s.upstream_id, s.downstream_id], now, config.history_days)
    tz = request.org.tzinfo
    picture = evidence.overlay_svg(
        upstream=evidence.day_points(levels[0], start, tz),
        downstream=evidence.day_points(levels[1], start, tz),
        lag=timedelta(days=s.lag_days),
        tz=tz,
        title=f"{s.upstream.name}, {s.lag_days} days later, against {s.downstream.name}",
    )
    sides = [end for end in ("upstream", "downstream") if getattr(s, end).owner.user_id == request.user.pk]
    context = {
        "s": s,
        "picture": picture,
        "sides": sides,
        "confirm_form": confirm or ConfirmForm(),
        "dismiss_form": dismiss or DismissForm(),
        "history_days": config.history_days,
        "alpha": config.alpha,
        "margin": suggestions.RESUGGEST_MARGIN,
        "bar": (s.dismissed_coefficient or 0) + suggestions.RESUGGEST_MARGIN,
        "max_lag": settings.FORESIGHT_DISCOVERY["max_lag"],
    }
    return render(request, "dependencies/suggestion.html", context, status=status)


@require_GET
def suggestion_detail(request: HttpRequest, suggestion_id: int) -> HttpResponse:
    return _detail(request, get_for_org_or_404(request, _suggestions(request), suggestion_id))


@require_POST
def suggestion_confirm(request: HttpRequest, suggestion_id: int) -> HttpResponse:
    s = get_for_org_or_404(request, _suggestions(request), suggestion_id)
    form = ConfirmForm(request.POST)
    if form.is_valid():
        try:
            s = suggestions.suggestion_confirm(suggestion=s, actor=request.user, kind=form.cleaned_data["kind"])
        except ValidationError as e:
            form.add_error(None, e)
        else:
            if s.state == SuggestedDependency.State.CONFIRMED:
                messages.success(request, f"{s.downstream.name} now depends on {s.upstream.name}.")
            else:
                messages.success(request, "Confirmed; the other KPI's owner is asked too.")
            return redirect("dependencies:suggestion_detail", org_slug=request.org.slug, suggestion_id=s.pk)
    return _detail(request, s, confirm=form, status=422)


@require_POST
def suggestion_dismiss(request: HttpRequest, suggestion_id: int) -> HttpResponse:
    s = get_for_org_or_404(request, _suggestions(request), suggestion_id)
    form = DismissForm(request.POST)
    if form.is_valid():
        try:
            suggestions.suggestion_dismiss(suggestion=s, actor=request.user, reason=form.cleaned_data["reason"])
        except ValidationError as e:
            form.add_error("reason" if hasattr(e, "error_dict") else None, e.messages[0])
        else:
            messages.success(request, "Dismissed; it comes back only if the evidence gets much stronger.")
            return redirect("dependencies:suggestion_list", org_slug=request.org.slug)
    return _detail(request, s, dismiss=form, status=422)
