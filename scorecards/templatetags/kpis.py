from __future__ import annotations

from datetime import timedelta

from django import template
from django.utils.html import format_html

from governance.durations import format_duration
from scorecards.models import Status
from scorecards.selectors import key_result_progress

register = template.Library()


@register.filter
def kpi_value(value: float | None, unit: str = "") -> str:
    """1234.5 -> "1,234.5 leads"; percentages and small numbers keep their precision."""
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}".rstrip("0").rstrip(".")
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("%", "pp") else f"{text} {unit}"


@register.filter
def duration(value: timedelta | None) -> str:
    return format_duration(value) if value is not None else "—"


@register.filter
def age(value: timedelta | None) -> str:
    """A data point's age as people say it: 40 min, 5 h, 3 d."""
    if value is None:
        return "never"
    minutes = int(value.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} d"


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


@register.filter
def bar_width(value: float | None) -> int:
    """Progress as a 0-100 step of 5 for a CSS class (no inline styles under the CSP)."""
    if value is None:
        return 0
    return int(min(max(value, 0), 1) * 20) * 5


@register.filter
def kr_progress(key_result) -> float | None:
    return key_result_progress(key_result)


@register.filter
def status_label(value: str) -> str:
    return Status(value).label if value in Status.values else value


@register.simple_tag
def status_chip(kpi) -> str:
    """The status chip with its pending qualifier ("On track · pending → At risk"); a tag, not an include,
    because the scorecard draws one per row."""
    chip = format_html('<span class="status status-{}">{}</span>', kpi.status, kpi.get_status_display())
    if not kpi.pending_status:
        return chip
    return format_html(
        '{} <span class="pending" title="The status changes once this has held {}">pending → {}</span>',
        chip,
        duration(kpi.pending_wait),
        kpi.get_pending_status_display(),
    )
