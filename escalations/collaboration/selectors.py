"""Reads shared by the pages, the share page and TV mode."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Model, QuerySet
from django.utils import timezone

from escalations.collaboration.models import Attachment, Comment
from escalations.collaboration.targets import target_of
from governance.models import Membership, Organization
from scorecards import selectors as scorecard_selectors
from scorecards.charts.sparkline import sparkline
from scorecards.models import Direction, Scorecard, Status


def comments_on(target: Model) -> QuerySet[Comment]:
    return Comment.objects.filter(
        organization_id=target.organization_id,
        target_type=target_of(target).content_type(),
        target_id=target.pk,
    ).select_related("author__user", "deleted_by")


def attachments_on(target: Model) -> QuerySet[Attachment]:
    return Attachment.objects.filter(
        organization_id=target.organization_id,
        target_type=target_of(target).content_type(),
        target_id=target.pk,
        deleted_at=None,
    ).select_related("uploaded_by__user")


def mention_candidates(*, org: Organization, prefix: str, limit: int = 8) -> list[Membership]:
    members = Membership.objects.filter(organization=org, is_active=True).select_related("user")
    if prefix:
        members = members.filter(user__email__istartswith=prefix) | members.filter(user__name__icontains=prefix)
    return list(members.order_by("user__name", "user__email")[:limit])


def scorecard_rows(*, org: Organization, scorecard: Scorecard, viewer: Membership | None) -> list[dict]:
    """The scorecard's KPIs as its page shows them (status, value against target, trend, the last 30 days), the
    worst first; `viewer` None reads every KPI of the scorecard (a share link, the office screen)."""
    kpis = list(scorecard_selectors.kpi_list(org=org, viewer=viewer, scorecard=scorecard))
    now = timezone.now()
    series = scorecard_selectors.fetch_series([k.pk for k in kpis], now - timedelta(days=30), now)
    rows = []
    for k in kpis:
        trend = scorecard_selectors.trend(series.get(k.pk, []))
        rows.append(
            {
                "kpi": k,
                "spark": sparkline(series.get(k.pk, []), status=k.status, label=f"{k.name}, last 30 days"),
                "trend": trend,
                "trend_good": trend != "flat" and (trend == "up") == (k.direction == Direction.INCREASE),
            }
        )
    return rows


def status_counts(rows: list[dict]) -> list[tuple[str, str, int]]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["kpi"].status] = counts.get(row["kpi"].status, 0) + 1
    return [(value, label, counts.get(value, 0)) for value, label in Status.choices]
