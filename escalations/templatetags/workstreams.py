from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from escalations.workstreams import selectors
from escalations.workstreams.selectors import escalation_state
from scorecards.templatetags.kpis import age

register = template.Library()


@register.filter
def due_in(value: datetime | None) -> str:
    """A deadline as people say it: "in 5 h", or "3 d overdue" once it has passed."""
    if value is None:
        return "—"
    left = value - timezone.now()
    return f"in {age(left)}" if left.total_seconds() >= 0 else f"{age(-left)} overdue"


@register.filter
def overdue(value: datetime | None) -> bool:
    return value is not None and value < timezone.now()


@register.filter
def round_words(level: int, pass_: int) -> str:
    """`{{ task.level|round_words:task.escalation_pass }}`: "second round, level 2"."""
    return selectors.round_words(level, pass_)


@register.filter
def escalation_summary(workstream) -> str:
    """selectors.escalation_state without its explanation, for a table cell."""
    return escalation_state(workstream).split(":")[0].replace("Escalated to level", "Level")


@register.simple_tag
def upstream_causes(kpi, limit: int = 20) -> list:
    """`{% upstream_causes kpi as causes %}`: selectors.upstream_causes for a page of an app below escalations (the
    KPI page), which may load this library but not import escalations."""
    return selectors.upstream_causes(org=kpi.organization, kpi=kpi, limit=limit)


@register.simple_tag
def with_next(tasks, org) -> list:
    """`{% with_next tasks org as tasks %}`: selectors.with_next for My work, a page of an app below escalations:
    each task of a workstream says what happens next there, as the inbox does."""
    return selectors.with_next(list(tasks), org)
