"""The scorecard keeps each KPI's rendered row (scorecards.row_cache): after an evaluation, new data or a
configuration change the page never shows the old row, and the kept rows never cross organizations or reach a
person who may not see the KPI."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from governance.manifest.engine import apply_manifest, export_manifest
from scorecards.evaluation.sweep import evaluate_due
from scorecards.ingestion.store import measurements_store
from scorecards.services import kpi_schedule_evaluation, kpi_update, ownership_transfer_decide
from tests.scorecards import test_visibility

board = test_visibility.board  # the executive-only scorecard's fixture


def page(t, membership=None) -> str:
    response = t.client(membership or t.executive).get(reverse("scorecards:kpi_list", args=[t.org.slug]))
    assert response.status_code == 200
    return response.content.decode()


def row(html: str, name: str) -> str:
    """The table row of the KPI called `name`."""
    return next(tr for tr in re.findall(r"<tr>.*?</tr>", html, re.S) if f">{name}</a>" in tr)


def store(t, *points: tuple[timedelta, float]) -> None:
    now = timezone.now()
    measurements_store(org=t.org, rows=[(t.kpi.pk, now - ago, value) for ago, value in points], source="api")


@pytest.fixture
def measured(tenant):
    """The tenant's KPI on track with two points, its status changing at once, its row already kept."""
    tenant.kpi.pending_for = timedelta(0)
    tenant.kpi.save()
    store(tenant, (timedelta(days=2), 1250), (timedelta(hours=1), 1300))
    evaluate_due(org_id=tenant.org.pk)
    assert "status-on_track" in row(page(tenant), "Throughput")
    return tenant


def test_it_shows_the_new_status_after_new_data_is_evaluated(measured):
    store(measured, (timedelta(minutes=5), 700))
    evaluate_due(org_id=measured.org.pk)
    shown = row(page(measured), "Throughput")
    assert "status-off_track" in shown
    assert "700" in shown


def test_it_redraws_the_sparkline_for_a_back_dated_point(measured):
    before = row(page(measured), "Throughput")
    store(measured, (timedelta(days=10), 900))  # older than the newest point: status and value stay
    after = row(page(measured), "Throughput")
    assert after.count(",") > before.count(",")  # one more point in the polyline
    assert "status-on_track" in after


def test_it_shows_the_new_status_after_a_threshold_edit(measured):
    kpi_update(kpi=measured.kpi, actor=measured.admin.user, thresholds={"warning": 1400, "critical": 1350})
    kpi_schedule_evaluation(kpi=measured.kpi)
    evaluate_due(org_id=measured.org.pk)
    assert "status-off_track" in row(page(measured), "Throughput")


def test_it_shows_a_new_target_at_once(measured):
    kpi_update(kpi=measured.kpi, actor=measured.admin.user, target_value=4321)
    assert "4,321" in row(page(measured), "Throughput")


def test_it_shows_the_new_owner_after_a_transfer(measured):
    ownership_transfer_decide(transfer=measured.transfer, decider=measured.executive, approve=True, note="Team moved")
    assert measured.member.user.name in row(page(measured), "Throughput")


def test_it_shows_what_a_manifest_applied(measured):
    doc = export_manifest(measured.org)
    next(k for k in doc["kpis"] if k["key"] == "ops.throughput")["name"] = "Weekly throughput"
    assert apply_manifest(doc).errors == []
    html = page(measured)
    assert "Weekly throughput" in row(html, "Weekly throughput")
    assert ">Throughput</a>" not in html


def test_two_organizations_never_share_a_row(tenant, stranger_tenant):
    # Both have a KPI "Throughput" with the same settings and no data: only the organization tells them apart.
    ours, theirs = row(page(tenant), "Throughput"), row(page(stranger_tenant), "Throughput")
    assert f"/o/acme/kpis/{tenant.kpi.pk}/" in ours
    assert f"/o/globex/kpis/{stranger_tenant.kpi.pk}/" in theirs
    assert "/o/acme/" not in theirs


def test_a_row_kept_for_an_executive_never_reaches_a_member_who_may_not_see_it(board):
    assert test_visibility.SECRET in page(board, board.executive)
    assert test_visibility.SECRET not in page(board, board.member)


def test_a_second_look_reads_no_measurement(measured):
    client = measured.client(measured.executive)
    url = reverse("scorecards:kpi_list", args=[measured.org.slug])
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    assert not [q for q in queries.captured_queries if "scorecards_measurement" in q["sql"]]
