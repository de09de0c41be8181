"""The onboarding checklist on a new organization's overview: teams, colleagues, a first KPI and a first source of
data, each ticked off as soon as it exists; the checklist disappears once all are done."""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.urls import reverse

from governance.models import Invitation, Membership, Team
from scorecards.models import DataSource, Kpi, Measurement

register = template.Library()


@dataclass(frozen=True)
class Step:
    title: str
    help: str
    url: str
    done: bool


def onboarding_steps(org) -> list[Step]:
    slug = org.slug
    has_people = (
        Invitation.objects.for_org(org).exists() or Membership.objects.for_org(org).filter(is_active=True).count() > 1
    )
    has_data = DataSource.objects.for_org(org).exists() or Measurement.objects.for_org(org).exists()
    return [
        Step(
            "Create your teams",
            "The teams KPIs belong to, with their leads.",
            reverse("governance:team_list", args=[slug]),
            Team.objects.for_org(org).exists(),
        ),
        Step(
            "Invite your colleagues",
            "Executives, team leads and KPI owners.",
            reverse("governance:member_list", args=[slug]),
            has_people,
        ),
        Step(
            "Define a first KPI",
            "Its owner, target and thresholds.",
            reverse("scorecards:kpi_create", args=[slug]),
            Kpi.objects.for_org(org).exists(),
        ),
        Step(
            "Connect a first data source",
            "A scheduled pull, the API, or a CSV import.",
            reverse("scorecards:data_sources", args=[slug]),
            has_data,
        ),
    ]


@register.inclusion_tag("scorecards/_onboarding.html", takes_context=True)
def onboarding_checklist(context) -> dict:
    membership = context.get("membership")
    if membership is None or not membership.is_admin:
        return {"steps": []}
    steps = onboarding_steps(context["org"])
    return {"steps": [] if all(s.done for s in steps) else steps, "done": sum(s.done for s in steps)}
