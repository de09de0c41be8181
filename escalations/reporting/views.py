"""The reports pages, for executives and admins: governance health (whether breaches reach decisions, week by
week) and the team dependency matrix."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from escalations.reporting import health, health_charts, matrix
from governance.access import role_required
from governance.models import Role


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
        },
    )


@role_required(Role.ADMIN, Role.EXECUTIVE)
@require_GET
def dependency_matrix(request: HttpRequest) -> HttpResponse:
    return render(request, "escalations/dependency_matrix.html", matrix.team_matrix(org=request.org))
