"""Did the path work: the trend before and after an approved path's actions were done, on constructed series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from escalations.decisions.effectiveness import path_effects, slope, trend_change
from escalations.models import Decision
from scorecards.models import Measurement
from tests.escalations.factories import MitigationActionFactory, MitigationPathFactory, WorkstreamFactory

DONE = datetime(2026, 11, 16, 9, tzinfo=UTC)
DAY = timedelta(days=1)


def line(start: float, per_day: float, first: int, last: int) -> list[tuple[datetime, float]]:
    """Daily points from DONE+first to DONE+last days, on a straight line through `start` at DONE."""
    return [(DONE + d * DAY, start + per_day * d) for d in range(first, last + 1)]


def test_slope_is_the_change_per_day():
    assert slope(line(100, -2.5, 0, 10)) == pytest.approx(-2.5)
    assert slope(line(100, 1, 0, 1)) is None  # too few points


@pytest.mark.parametrize(
    ("direction", "before", "after", "better"),
    [
        ("increase", -2.0, 3.0, True),
        ("increase", 3.0, -1.0, False),
        ("decrease", 1.5, -0.5, True),
        ("decrease", -1.0, 0.5, False),
        ("range", -1.0, 1.0, None),
    ],
)
def test_the_trend_before_and_after_the_actions(direction, before, after, better):
    points = line(100, before, -14, -1) + line(100, after, 0, 14)
    effect = trend_change(points, DONE, direction)
    assert (effect.before, effect.after, effect.better) == (pytest.approx(before), pytest.approx(after), better)


def test_without_data_after_the_actions_there_is_no_verdict():
    assert trend_change(line(100, 1, -14, -1), DONE, "increase") is None


def approval(tenant, *, done: list[datetime | None]) -> Decision:
    ws = WorkstreamFactory(kpi=tenant.kpi, opened_at=DONE - 20 * DAY)
    path = MitigationPathFactory(workstream=ws, filed_by=tenant.lead.user, state="approved")
    for at in done:
        MitigationActionFactory(path=path, owner=tenant.member, done_at=at)
    return Decision.objects.create(
        organization=tenant.org,
        kind=Decision.Kind.PATH_APPROVED,
        kpi=tenant.kpi,
        workstream=ws,
        path=path,
        decided_by=tenant.executive.user,
        decided_at=DONE - 18 * DAY,
        reason="Good plan",
        kpi_status="off_track",
    )


def store(tenant, points) -> None:
    Measurement.objects.bulk_create(
        Measurement(organization=tenant.org, kpi=tenant.kpi, at=at, value=v) for at, v in points
    )


def test_the_decision_log_shows_whether_the_path_turned_the_trend(tenant, stranger_tenant):
    d = approval(tenant, done=[DONE - 3 * DAY, DONE])  # measured from the last action done
    store(tenant, line(900, -4, -14, -1) + line(900, 6, 0, 14))
    [effect] = path_effects(org=tenant.org, decisions=[d]).values()
    assert (effect.done, effect.before, effect.after, effect.better) == (
        DONE,
        pytest.approx(-4),
        pytest.approx(6),
        True,
    )
    page = tenant.client(tenant.executive).get(reverse("escalations:decision_log", args=[tenant.org.slug]))
    assert "Trend -4/day before the actions, +6/day after: improved" in page.content.decode()
    # The stranger's log shows nothing of it, and its organization computes nothing from these rows.
    theirs = stranger_tenant.client(stranger_tenant.executive).get(
        reverse("escalations:decision_log", args=[stranger_tenant.org.slug])
    )
    assert "Trend -4/day" not in theirs.content.decode()
    assert path_effects(org=stranger_tenant.org, decisions=[d]) == {}


def test_a_path_with_an_action_still_open_has_no_verdict_yet(tenant):
    d = approval(tenant, done=[DONE, None])
    store(tenant, line(900, -4, -14, 14))
    assert path_effects(org=tenant.org, decisions=[d]) == {}
