"""The steering pack in each format it is offered in: the PDF (pack), the PowerPoint deck (deck) and the red KPIs as
a spreadsheet, for the download links and the scheduled reports alike."""

from __future__ import annotations

from escalations.decisions.deck import render_pack_pptx
from escalations.decisions.pack import RED, render_pack
from escalations.models import ReviewSession
from governance import exports
from governance.models import Membership
from scorecards.selectors import SCORECARD_COLUMNS, kpi_list, scorecard_table

PACK_FORMATS = {
    "pdf": "application/pdf",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "xlsx": exports.FORMATS["xlsx"],
}


def render_pack_as(fmt: str, *, session: ReviewSession, viewer: Membership | None) -> bytes:
    """The pack as `fmt` (a key of PACK_FORMATS): the PDF, the deck, or the red KPIs as a spreadsheet."""
    if fmt == "pptx":
        return render_pack_pptx(session=session, viewer=viewer)
    if fmt == "xlsx":
        org = session.organization
        red = kpi_list(org=org, viewer=viewer).filter(status__in=RED)
        rows = scorecard_table(red)
        return exports.as_xlsx(SCORECARD_COLUMNS, rows, tz=org.tzinfo, title="Red KPIs")
    return render_pack(session=session, viewer=viewer)
