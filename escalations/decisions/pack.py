"""The steering pack: a review session as a PDF to circulate (scorecard summary, the charts of the KPIs decided on,
the decisions with what happened next, the open actions). WeasyPrint lays out a print template (HTML and CSS)."""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from escalations.decisions import agenda, selectors
from escalations.models import ReviewSession
from governance.models import Membership
from scorecards.models import Kpi, Status
from scorecards.selectors import kpi_list, status_counts, visible_kpis

RED = [Status.OFF_TRACK, Status.AT_RISK, Status.STALE]
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)  # one INFO line per layout step otherwise


def _static(name: str) -> str:
    found = finders.find(name) or Path(settings.BASE_DIR) / "static" / name
    return Path(found).read_text(encoding="utf-8")


@cache
def _svg_style() -> str:
    """charts.css for an inline SVG: WeasyPrint styles an SVG only from its own <style>, whose root is the chart
    itself, so the `.chart ` descendant prefix is dropped."""
    css = re.sub(r"/\*.*?\*/", "", _static("css/charts.css"), flags=re.S)
    # The white halo behind labels needs paint-order, which WeasyPrint lacks: it would hide the text instead.
    return re.sub(r"\.chart\s+(?=[.\w])", "", css) + ".last-label, .target-label { stroke: none; }"


def print_chart(svg: str) -> SafeString:
    """The screen chart with its styles inside, for the PDF."""
    return mark_safe(re.sub(r"(<svg\b[^>]*>)", lambda m: f"{m.group(1)}<style>{_svg_style()}</style>", svg, count=1))


def pack_context(session: ReviewSession, viewer: Membership | None) -> dict:
    """What the pack shows `viewer` (None: everything): only the KPIs, and decisions on KPIs, they may see."""
    org = session.organization
    now = timezone.now()
    kpis = kpi_list(org=org, viewer=viewer)
    visible = visible_kpis(Kpi.objects.for_org(org), viewer)
    log = list(selectors.decision_list(org=org, session=session).filter(kpi__in=visible))
    counts = status_counts(kpis)
    decided = list({d.kpi_id: d.kpi for d in reversed(log)}.values())
    charts = agenda.attach_charts(decided, org.tzinfo, now=now, width=720, height=250)
    by_kpi: dict[int, list] = {}
    for d in log:
        by_kpi.setdefault(d.kpi_id, []).append(d)
    return {
        "org": org,
        "session": session,
        "now": now,
        "attendees": selectors.session_attendees(session),
        "counts": [(value, label, counts[value]) for value, label in Status.choices],
        "kpi_total": sum(counts.values()),
        "red": list(kpis.filter(status__in=RED)),
        "decisions": log,
        "outcomes": selectors.outcomes(org=org, decisions=log, now=now),
        "charts": [
            {
                "kpi": k,
                "chart": print_chart(charts[k.pk]),
                "decisions": sorted(by_kpi[k.pk], key=lambda d: d.decided_at),
            }
            for k in decided
        ],
        "actions": selectors.session_open_actions(session=session, viewer=viewer),
        "today": timezone.localdate(now, org.tzinfo),
    }


def render_pack(*, session: ReviewSession, viewer: Membership | None, base_url: str | None = None) -> bytes:
    # Imported here: WeasyPrint loads Pango through cffi, which only this view needs.
    from weasyprint import CSS, HTML

    # Times in the organization's zone, as on its pages (a worker or shell has no request to set it).
    with timezone.override(session.organization.tzinfo):
        html = render_to_string("escalations/review_pack.html", pack_context(session, viewer))
    return HTML(string=html, base_url=base_url).write_pdf(stylesheets=[CSS(string=_static("css/pack.css"))])
