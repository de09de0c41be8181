"""The steering pack as a PowerPoint deck, for executives who build their board deck from it: a title slide, a summary
slide, then one slide per red KPI (at risk, off track or stale) with its chart, reason, mitigation path, actions and
the decisions taken on it in the session.

The charts are the KPI page's SVG charts (scorecards.charts), styled as in the PDF and rasterised by CairoSVG: one
charting code path for the screen, the PDF and the deck.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from django.utils import timezone
from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.enum.text import PP_ALIGN
from pptx.util import Inches, Pt

from escalations.decisions import agenda
from escalations.decisions.pack import pack_context, print_chart
from escalations.models import MitigationPath, ReviewSession
from governance.models import Membership, Organization
from scorecards.models import Kpi, Status


@dataclass(frozen=True)
class Palette:
    """Hex colours without '#': the organization's if it has its own, the house palette (static/css/app.css)
    otherwise."""

    brand: str = "1F3A5F"
    ink: str = "16202C"
    muted: str = "5F6B78"
    background: str = "F3F5F8"
    status: tuple[tuple[str, str], ...] = (
        (Status.ON_TRACK, "1F8A5B"),
        (Status.AT_RISK, "B7791F"),
        (Status.OFF_TRACK, "C0392B"),
        (Status.STALE, "5B6672"),
        (Status.NO_DATA, "7B8794"),
    )

    def of(self, status: str) -> str:
        return dict(self.status).get(status, self.muted)


def palette(org: Organization) -> Palette:
    # Organizations have no colours of their own yet: every deck wears the house palette.
    return Palette()


SVG_NS = "http://www.w3.org/2000/svg"
CHART_PX = (1440, 540)  # rasterised at twice the drawn size, sharp on a projector


def chart_png(svg: str) -> bytes:
    import cairosvg  # loads cairo through cffi: only the deck needs it

    styled = str(print_chart(svg))
    # CairoSVG reads only elements in the SVG namespace (a browser infers it for inline SVG), and would take the
    # page's root rule (`.chart { width: 100%; height: auto }`) as the image's size: the chart keeps its viewBox.
    styled = styled.replace("<svg ", f'<svg xmlns="{SVG_NS}" ', 1)
    styled = re.sub(r"\.chart\s*\{[^}]*\}", "", styled, count=1)
    return cairosvg.svg2png(bytestring=styled.encode(), output_width=CHART_PX[0], background_color="white")


def _live_paths(org: Organization, kpis: list[Kpi]) -> dict[int, MitigationPath]:
    """The latest path of each KPI's open workstream, with its actions."""
    paths = (
        MitigationPath.objects.for_org(org)
        .filter(workstream__kpi__in=kpis, workstream__resolved_at=None)
        .select_related("workstream")
        .prefetch_related("actions__owner__user")
        .order_by("workstream__kpi_id", "-filed_at", "-id")
    )
    latest: dict[int, MitigationPath] = {}
    for p in paths:
        latest.setdefault(p.workstream.kpi_id, p)
    return latest


def render_pack_pptx(*, session: ReviewSession, viewer: Membership | None) -> bytes:

    org = session.organization
    with timezone.override(org.tzinfo):
        context = pack_context(session, viewer)
    colours = palette(org)
    deck = Presentation()
    deck.slide_width, deck.slide_height = Inches(13.333), Inches(7.5)  # 16:9
    _title_slide(deck, context, colours)
    _summary_slide(deck, context, colours)
    red: list[Kpi] = context["red"]
    charts = agenda.attach_charts(red, org.tzinfo, now=context["now"], width=CHART_PX[0] // 2, height=CHART_PX[1] // 2)
    paths = _live_paths(org, red)
    decided: dict[int, list] = {}
    for d in context["decisions"]:
        decided.setdefault(d.kpi_id, []).append(d)
    for kpi in red:
        _kpi_slide(deck, kpi, chart_png(charts[kpi.pk]), paths.get(kpi.pk), decided.get(kpi.pk, []), colours)
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def _rgb(hex_colour: str) -> RGBColor:
    return RGBColor.from_string(hex_colour)


def _text(slide, left, top, width, height, paragraphs: list[tuple[str, int, str, bool]]) -> None:
    """A text box of (text, size in points, colour, bold) paragraphs, wrapping."""

    frame = slide.shapes.add_textbox(Inches(left), Inches(top), Inches(width), Inches(height)).text_frame
    frame.word_wrap = True
    for i, (text, size, colour, bold) in enumerate(paragraphs):
        para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
        para.text = text
        para.font.size, para.font.bold = Pt(size), bold
        para.font.color.rgb = _rgb(colour)


def _titled(deck, title: str, colours: Palette):

    slide = deck.slides.add_slide(deck.slide_layouts[5])  # "Title Only": the title stays a real slide title
    shape = slide.shapes.title
    shape.left, shape.top, shape.width, shape.height = Inches(0.5), Inches(0.3), Inches(12.3), Inches(0.9)
    shape.text = title
    para = shape.text_frame.paragraphs[0]
    para.alignment = PP_ALIGN.LEFT
    para.font.size, para.font.bold = Pt(28), True
    para.font.color.rgb = _rgb(colours.brand)
    return slide


def _title_slide(deck, context: dict, colours: Palette) -> None:

    session, org = context["session"], context["org"]
    slide = deck.slides.add_slide(deck.slide_layouts[0])
    slide.background.fill.solid()
    slide.background.fill.fore_color.rgb = _rgb(colours.brand)
    slide.shapes.title.text = f"Steering pack: {session.title}"
    started = timezone.localtime(session.started_at, org.tzinfo)
    slide.placeholders[1].text = f"{org.name} · {started:%d %B %Y, %H:%M} ({org.timezone})"
    for shape in (slide.shapes.title, slide.placeholders[1]):
        for para in shape.text_frame.paragraphs:
            para.font.color.rgb = _rgb("FFFFFF")
    slide.shapes.title.text_frame.paragraphs[0].font.size = Pt(36)


def _summary_slide(deck, context: dict, colours: Palette) -> None:

    slide = _titled(deck, "Scorecard summary", colours)
    counts = context["counts"]
    table = slide.shapes.add_table(2, len(counts), Inches(0.5), Inches(1.5), Inches(12.3), Inches(1.4)).table
    for col, (value, label, n) in enumerate(counts):
        for row, text, size in ((0, label, 14), (1, str(n), 32)):
            cell = table.cell(row, col)
            cell.text = text
            cell.fill.solid()
            cell.fill.fore_color.rgb = _rgb(colours.of(value))
            para = cell.text_frame.paragraphs[0]
            para.font.size, para.font.bold = Pt(size), True
            para.font.color.rgb = _rgb("FFFFFF")
    red, attendees = context["red"], context["attendees"]
    facts = [
        (
            f"{context['kpi_total']} KPIs; {len(red)} at risk, off track or stale: one slide each follows.",
            18,
            colours.ink,
            False,
        ),
        (f"Decisions taken in this review: {len(context['decisions'])}", 18, colours.ink, False),
        (f"Open actions: {context['actions'].total}", 18, colours.ink, False),
        ("Attendees: " + (", ".join(m.user.name for m in attendees) or "none recorded"), 14, colours.muted, False),
    ]
    if context["session"].summary:
        facts.append((context["session"].summary, 14, colours.ink, False))
    _text(slide, 0.5, 3.3, 12.3, 3.8, facts)


def _kpi_slide(deck, kpi: Kpi, png: bytes, path: MitigationPath | None, decisions: list, colours: Palette) -> None:

    slide = _titled(deck, f"{kpi.name} — {kpi.get_status_display()}", colours)
    slide.shapes.title.text_frame.paragraphs[0].font.color.rgb = _rgb(colours.of(kpi.status))
    value = "no value" if kpi.last_value is None else f"{kpi.last_value:g} {kpi.unit}".strip()
    target = "" if kpi.target_value is None else f", target {kpi.target_value:g} {kpi.unit}".strip()
    _text(
        slide,
        0.5,
        1.15,
        12.3,
        0.4,
        [(f"{kpi.team.name} · owner {kpi.owner.user.name} · now {value}{target}", 14, colours.muted, False)],
    )
    slide.shapes.add_picture(io.BytesIO(png), Inches(0.5), Inches(1.7), width=Inches(7.6))
    notes: list[tuple[str, int, str, bool]] = [
        ("Reason", 14, colours.brand, True),
        (kpi.reason or "—", 12, colours.ink, False),
    ]
    notes.append(("Mitigation path", 14, colours.brand, True))
    if path is None:
        notes.append(("None filed yet.", 12, colours.muted, False))
    else:
        notes.append(
            (
                f"{path.root_cause} ({path.get_state_display().lower()}, "
                f"recovery by {path.expected_recovery:%d %b %Y})",
                12,
                colours.ink,
                False,
            )
        )
        notes.append(("Actions", 14, colours.brand, True))
        for a in path.actions.all():
            done = "done" if a.done_at else f"due {a.due:%d %b}"
            notes.append((f"• {a.description} — {a.owner.user.name}, {done}", 12, colours.ink, False))
    if decisions:
        notes.append(("Decisions in this review", 14, colours.brand, True))
        notes += [(f"• {d.get_kind_display()}: {d.reason}", 12, colours.ink, False) for d in decisions]
    _text(slide, 8.3, 1.7, 4.6, 5.5, notes)
