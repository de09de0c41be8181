"""Lists as Excel and CSV: each file is opened again and read (typed cells, dates as dates, frozen header, widths);
CSV round-trips; another organization's member gets nothing."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from escalations.models import Decision, Workstream
from governance import exports
from governance.services.audit import audit_log
from tests.conftest import Tenant


def _get(tenant: Tenant, name: str, fmt: str, *args, **query):
    url = reverse(name, args=[tenant.org.slug, *args])
    return tenant.client(tenant.admin).get(url, {"format": fmt, **query})


def _sheet(response):
    assert response["Content-Type"] == exports.FORMATS["xlsx"]
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return load_workbook(io.BytesIO(response.content)).active


@pytest.fixture
def measured(tenant):
    kpi = tenant.kpi
    kpi.status, kpi.last_value, kpi.reason = "off_track", 640.5, "Below the critical 800."
    kpi.last_measured_at = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    kpi.save()
    return kpi


def test_the_scorecard_as_excel_has_typed_cells_a_frozen_header_and_widths(tenant, measured):
    sheet = _sheet(_get(tenant, "scorecards:scorecard", "xlsx", tenant.scorecard.pk))
    header = [c.value for c in sheet[1]]
    assert header[:6] == ["Key", "KPI", "Team", "Owner", "Status", "Value"]
    assert sheet.freeze_panes == "A2" and sheet[1][0].font.bold
    row = {h: c for h, c in zip(header, sheet[2], strict=True)}
    assert row["Value"].value == 640.5 and row["Value"].data_type == "n"
    assert row["Target"].value == 1200.0
    # On the organization's wall clock (the tenant's zone), as a real date cell.
    local = measured.last_measured_at.astimezone(tenant.org.tzinfo).replace(tzinfo=None)
    assert isinstance(row["Last measured"].value, datetime) and row["Last measured"].value == local
    assert row["Last measured"].is_date
    assert sheet.column_dimensions["B"].width >= len("Throughput")
    assert sheet.column_dimensions["J"].width >= len("Below the critical 800.")


def test_the_scorecard_as_csv_round_trips(tenant, measured):
    response = _get(tenant, "scorecards:kpi_list", "csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "Key", "KPI", "Team", "Owner", "Status", "Value", "Unit", "Target", "Last measured", "Reason",
    ]  # fmt: skip
    throughput = next(r for r in rows if r[0] == "ops.throughput")
    assert float(throughput[5]) == 640.5 and throughput[4] == "Off track" and throughput[9] == "Below the critical 800."
    local = measured.last_measured_at.astimezone(tenant.org.tzinfo)
    assert datetime.fromisoformat(throughput[8]) == local.replace(tzinfo=None, second=0)


def test_the_export_keeps_the_page_filters(tenant, measured):
    rows = list(
        csv.reader(
            io.StringIO(_get(tenant, "scorecards:kpi_list", "csv", status="on_track").content.decode("utf-8-sig"))
        )
    )
    assert rows == [rows[0]]  # the header only: the one KPI is off track


def test_a_cell_that_looks_like_a_formula_stays_text_in_csv(tenant):
    body = exports.as_csv(["A", "B"], [['=HYPERLINK("x")', -3.5]], tz=UTC).decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(body)))[1] == ['\'=HYPERLINK("x")', "-3.5"]


def test_workstreams_decisions_and_audit_log_come_as_excel_with_dates(tenant):
    Workstream.objects.create(
        organization=tenant.org, kpi=tenant.kpi, severity="off_track", opened_at=timezone.now() - timedelta(days=2)
    )
    Decision.objects.create(
        organization=tenant.org,
        kind=Decision.Kind.RISK_ACCEPTED,
        kpi=tenant.kpi,
        decided_by=tenant.executive.user,
        reason="Seasonal dip",
        kpi_status="off_track",
        expected_by=date(2026, 12, 31),
    )
    audit_log(org=tenant.org, actor=tenant.admin.user, verb="test.exported", obj=tenant.kpi)
    ws = _sheet(_get(tenant, "escalations:workstream_list", "xlsx"))
    assert [c.value for c in ws[1]][:4] == ["KPI", "Kind", "Severity", "Opened"]
    assert ws["A2"].value == "Throughput" and isinstance(ws["D2"].value, datetime) and ws["G2"].data_type == "n"
    decisions = _sheet(_get(tenant, "escalations:decision_log", "xlsx"))
    header = [c.value for c in decisions[1]]
    row = dict(zip(header, [c.value for c in decisions[2]], strict=True))
    assert row["Reason"] == "Seasonal dip" and isinstance(row["Decided"], datetime)
    assert row["Expected by"] == datetime(2026, 12, 31) and decisions.cell(2, header.index("Expected by") + 1).is_date
    audit = _sheet(_get(tenant, "governance:audit_list", "xlsx"))
    row = next(r for r in audit.iter_rows(min_row=2) if r[2].value == "test.exported")
    assert isinstance(row[0].value, datetime) and row[0].is_date and row[1].value == tenant.admin.user.name


def test_the_list_pages_link_their_downloads(tenant):
    for name, args in (
        ("scorecards:kpi_list", []),
        ("escalations:workstream_list", []),
        ("escalations:decision_log", []),
        ("governance:audit_list", []),
    ):
        html = tenant.client(tenant.admin).get(reverse(name, args=[tenant.org.slug, *args])).content.decode()
        assert "format=xlsx" in html and "format=csv" in html, name


@pytest.mark.parametrize(
    "name",
    ["scorecards:kpi_list", "escalations:workstream_list", "escalations:decision_log", "governance:audit_list"],
)
def test_a_stranger_gets_404_for_another_organizations_export(tenant, stranger_tenant, name):
    response = stranger_tenant.client(stranger_tenant.admin).get(
        reverse(name, args=[tenant.org.slug]), {"format": "xlsx"}
    )
    assert response.status_code == 404


def test_a_stranger_gets_404_for_another_organizations_scorecard_export(tenant, stranger_tenant):
    response = stranger_tenant.client(stranger_tenant.admin).get(
        reverse("scorecards:scorecard", args=[stranger_tenant.org.slug, tenant.scorecard.pk]), {"format": "csv"}
    )
    assert response.status_code == 404


def test_a_sheet_name_excel_would_refuse_is_cleaned():
    body = exports.as_xlsx(["A"], [[1]], tz=UTC, title="Sales / Ops [EMEA]: the long scorecard name")
    assert load_workbook(io.BytesIO(body)).active.title == "Sales   Ops  EMEA   the long sc"
