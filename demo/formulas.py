"""The demo's calculated KPI: Finance's gap between gross and EBITDA margin (what operating costs take), computed
from the two margins by its formula (docs/manifest.md, "Formulas").

Its history is the formula applied to each day both margins have data, written as the recomputation would have
written it; its "computed from" edges are kept by the same service as a manifest apply, and the first evaluation
sweep judges it like any KPI that received data.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from demo.story import FIN, SETTINGS
from dependencies.formulas import formula_edges_sync
from governance.models import Organization, Team
from scorecards.ingestion.store import FORMULA
from scorecards.models import Kpi, KpiSchedule, Measurement

KEY, FORMULA_TEXT = "fin.opex_margin_gap", "fin.gross_margin - fin.ebitda_margin"


def seed_formulas(org: Organization) -> None:
    inputs = {k.key: k for k in Kpi.objects.for_org(org).filter(key__in=["fin.gross_margin", "fin.ebitda_margin"])}
    team = Team.objects.filter(organization=org, key=FIN).select_related("lead").first()
    if len(inputs) < 2 or team is None or team.lead is None:
        return
    kpi = Kpi.objects.create(
        organization=org,
        key=KEY,
        name="Gross-to-EBITDA margin gap",
        description="What operating costs take from the gross margin, in percentage points.",
        team=team,
        owner=team.lead,
        unit="%",
        direction="range",
        thresholds={"warning": [20, 36], "critical": [15, 40]},
        formula=FORMULA_TEXT,
        created_at=min(k.created_at for k in inputs.values()),
        **SETTINGS,
    )
    series = {key: dict(Measurement.objects.filter(kpi=k).values_list("at", "value")) for key, k in inputs.items()}
    gross, ebitda = series["fin.gross_margin"], series["fin.ebitda_margin"]
    points = sorted((at, gross[at] - ebitda[at]) for at in gross.keys() & ebitda.keys())
    Measurement.objects.bulk_create(
        Measurement(
            organization=org, kpi=kpi, at=at, value=value, source=FORMULA, ingested_at=at + timedelta(minutes=5)
        )
        for at, value in points
    )
    if points:
        Kpi.objects.filter(pk=kpi.pk).update(last_measured_at=points[-1][0])
    KpiSchedule.objects.create(kpi=kpi, organization=org, next_evaluation_at=timezone.now(), needs_evaluation=True)
    formula_edges_sync(org=org, actor=None)
