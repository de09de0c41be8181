"""The steering pack as a PowerPoint deck and a spreadsheet, opened again and read: a slide per red KPI with its
chart, reason, path, actions and decisions; and the deck as LibreOffice renders it."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE

from escalations.decisions import pack_files, review_sessions, services
from escalations.models import MitigationAction, MitigationPath, Workstream
from scorecards.models import Measurement
from tests.conftest import Tenant
from tests.factories import KpiFactory


def _red(tenant: Tenant, key: str, status: str, reason: str):
    kpi = KpiFactory(
        organization=tenant.org,
        team=tenant.team,
        owner=tenant.lead,
        key=key,
        name=key.split(".")[-1].capitalize(),
        status=status,
        status_since=timezone.now() - timedelta(days=2),
        last_value=640.0,
        last_measured_at=timezone.now() - timedelta(hours=3),
        reason=reason,
    )
    now = timezone.now()
    Measurement.objects.bulk_create(
        Measurement(organization=tenant.org, kpi=kpi, at=now - timedelta(days=d), value=900 - 20 * d) for d in range(14)
    )
    return kpi


@pytest.fixture
def deck_session(tenant):
    leads = _red(tenant, "sales.leads", "off_track", "640 leads is below the critical 800.")
    churn = _red(tenant, "care.churn", "at_risk", "Churn above the warning line.")
    ws = Workstream.objects.create(
        organization=tenant.org, kpi=leads, severity="off_track", opened_at=timezone.now() - timedelta(days=2)
    )
    filed = MitigationPath.objects.create(
        organization=tenant.org,
        workstream=ws,
        root_cause="Campaign paused",
        expected_recovery=date.today() + timedelta(days=20),
        filed_by=tenant.lead.user,
    )
    MitigationAction.objects.create(
        organization=tenant.org, path=filed, description="Restart the campaign", owner=tenant.member, due=date.today()
    )
    session = review_sessions.review_session_start(org=tenant.org, by=tenant.executive, title="December steering")
    services.decision_change_target(
        kpi=churn,
        by=tenant.executive,
        reason="Seasonal, expected back in January.",
        target_value=1000.0,
        target_by=None,
        thresholds={"warning": 900, "critical": 700},
        session=session,
    )
    return session, leads, churn


def test_the_deck_has_a_title_a_summary_and_one_slide_per_red_kpi(tenant, deck_session):
    session, leads, churn = deck_session
    response = tenant.client(tenant.member).get(
        reverse("escalations:review_session_pack_as", args=[tenant.org.slug, session.pk, "pptx"])
    )
    assert response.status_code == 200 and response["Content-Type"] == pack_files.PACK_FORMATS["pptx"]
    deck = Presentation(io.BytesIO(response.content))
    titles = [s.shapes.title.text for s in deck.slides]
    assert titles == [
        "Steering pack: December steering",
        "Scorecard summary",
        "Leads — Off track",  # the worst first, as on the scorecard
        "Churn — At risk",
    ]
    leads_slide, churn_slide = deck.slides[2], deck.slides[3]
    assert [s.shape_type for s in leads_slide.shapes].count(MSO_SHAPE_TYPE.PICTURE) == 1  # its chart
    picture = next(s for s in leads_slide.shapes if s.shape_type == MSO_SHAPE_TYPE.PICTURE)
    assert picture.image.content_type == "image/png" and picture.image.size[0] >= 1000
    text = _text(leads_slide)
    for expected in ("640 leads is below the critical 800.", "Campaign paused", "Restart the campaign"):
        assert expected in text, expected
    assert "Seasonal, expected back in January." in _text(churn_slide) and "None filed yet." in _text(churn_slide)
    assert "2 at risk, off track or stale" in _text(deck.slides[1])


def _text(slide) -> str:
    return "\n".join(s.text_frame.text for s in slide.shapes if s.has_text_frame)


def test_the_pack_spreadsheet_lists_the_red_kpis_with_typed_cells(tenant, deck_session):
    session, leads, churn = deck_session
    body = pack_files.render_pack_as("xlsx", session=session, viewer=tenant.member)
    sheet = load_workbook(io.BytesIO(body)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:2] == ("Key", "KPI") and sheet.freeze_panes == "A2"
    assert [r[0] for r in rows[1:]] == ["sales.leads", "care.churn"]
    assert rows[1][5] == 640.0  # a number, not "640 leads"


def test_a_stranger_gets_404_for_the_deck(tenant, stranger_tenant, deck_session):
    session, *_ = deck_session
    for fmt in ("pptx", "xlsx"):
        response = stranger_tenant.client(stranger_tenant.executive).get(
            reverse("escalations:review_session_pack_as", args=[tenant.org.slug, session.pk, fmt])
        )
        assert response.status_code == 404
        response = stranger_tenant.client(stranger_tenant.executive).get(
            reverse("escalations:review_session_pack_as", args=[stranger_tenant.org.slug, session.pk, fmt])
        )
        assert response.status_code == 404


def test_an_unknown_pack_format_is_404(tenant, deck_session):
    session, *_ = deck_session
    response = tenant.client(tenant.member).get(
        reverse("escalations:review_session_pack_as", args=[tenant.org.slug, session.pk, "docx"])
    )
    assert response.status_code == 404


@pytest.mark.skipif(not shutil.which("soffice") or not shutil.which("pdftoppm"), reason="needs LibreOffice and poppler")
def test_libreoffice_renders_the_deck(tenant, deck_session, tmp_path):
    """The deck opens in another presentation program than the library that wrote it: LibreOffice converts it to a
    PDF with every slide, and a slide rasterises to a non-empty image (tmp_path keeps them to look at)."""
    session, *_ = deck_session
    deck = tmp_path / "pack.pptx"
    deck.write_bytes(pack_files.render_pack_as("pptx", session=session, viewer=None))
    profile = f"-env:UserInstallation=file://{tmp_path}/lo-profile"  # no shared profile lock with another run
    subprocess.run(
        ["soffice", profile, "--headless", "--convert-to", "pdf", "--outdir", str(tmp_path), str(deck)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    from pypdf import PdfReader

    pdf = PdfReader(tmp_path / "pack.pdf")
    assert len(pdf.pages) == 4
    assert "Campaign paused" in pdf.pages[2].extract_text()
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", "-f", "3", "-l", "3", str(tmp_path / "pack.pdf"), str(tmp_path / "slide")],
        check=True,
        timeout=60,
    )
    png = next(tmp_path.glob("slide*.png"))
    assert png.stat().st_size > 5000
