"""Acme Electronics' KPIs as the demo tells them: each KPI's rules, its curve over six months (knots the series
passes through), its owner and team; the executive scorecard; the KPIs the story needs by name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta

from governance.durations import parse_duration
from scorecards.evaluation.thresholds import DECREASE, INCREASE, RANGE

HISTORY_DAYS = 183  # six months of daily measurements, the newest one on `today`
MEASURED_AT = time(8)  # every measurement arrives at 08:00 in the organization's zone
SETTINGS = {
    "cadence": parse_duration("1d"),
    "stale_after": parse_duration("3d"),
    "evaluate_every": parse_duration("1h"),
    "pending_for": parse_duration("2h"),
    "keep_for": parse_duration("1h"),
    "recovery_margin": "2%",
    "escalation": "standard",
}
RECOVERY_MARGIN = 0.02
PENDING_AGE = timedelta(minutes=40)
# Weekly rhythm (Monday first, mean 0), scaled by each KPI's `season`: busy early week, quiet weekend.
WEEK = [0.3, 0.4, 0.3, 0.2, 0.0, -0.5, -0.7]
SEVERITY = {"on_track": 0, "at_risk": 1, "off_track": 2}


@dataclass(frozen=True)
class Spec:
    """One demo KPI. `path` gives the underlying daily level as knots (days before today, level); for a dated
    target with `on_pace` the knots are factors of the pace line instead."""

    key: str
    name: str
    team: str
    owner: str | None  # email; None: the team's lead
    unit: str
    direction: str
    target: float | None
    thresholds: dict
    path: tuple[tuple[int, float], ...]
    decimals: int = 1
    aggregate: tuple[str, int] | None = None  # (fn, window in days); default: the last value
    baseline: float | None = None  # set: the target is dated (end of quarter, baseline at quarter start)
    on_pace: bool = False
    season: float = 0.0  # weekly seasonality, fraction of the level
    noise: float = 0.01  # autocorrelated day-to-day noise, fraction of the level
    wiggle: float = 0.01  # slow wave over weeks, fraction of the level
    cap: float | None = None
    stops_days_ago: int = 0  # > 0: the feed stopped (stale)
    no_data: bool = False
    last: float | None = None  # override the newest value (the pending KPI's fresh dip)
    surge: bool = False  # surge rule 30% over 7 days; its newest value awaits the first real evaluation
    campaigns: tuple[int, ...] = ()  # days ago a campaign started: the level is lifted by `lift` for CAMPAIGN_DAYS
    lift: float = 0.0
    alt_team: str | None = None  # when `team` does not exist in the organization
    alt_owner: str | None = None
    description: str = ""


# Six earlier, smaller campaigns lifted the leads for a few days each, and every time, two weeks later, the stock-out
# rate rose for as long: the dependency nobody declared, which the weekly hidden-dependency run finds in this history
# (dependencies.suggestions). Small enough to leave both KPIs' statuses as the story has them.
CAMPAIGNS = (170, 148, 121, 97, 76, 55)
CAMPAIGN_DAYS, STOCKOUT_LAG = 3, 14

MKT, SC, SALES, FIN, LEAD = "marketing", "supply-chain", "sales", "finance", "leadership"
ANALYST, PLANNER, CONTROLLER = "analyst.marketing@acme.test", "planner@acme.test", "controller@acme.test"
CEO, COO = "ceo@acme.test", "coo@acme.test"

# fmt: off
SPECS = [
    # --- Marketing: the launch campaign works ------------------------------------------------------------
    Spec(
        "mkt.leads", "Qualified leads per week", MKT, None, "leads", INCREASE, 1200,
        {"warning": 1000, "critical": 800},
        # Flat and short of the warning until the launch six days ago; the surge window (7 days against the 7
        # before) must hold the whole jump, noise included, so the knee is sharp and the last week clears +40%.
        ((182, 118), (140, 124), (100, 131), (60, 127), (28, 133), (21, 132), (14, 126), (7, 128), (6, 180), (0, 210)),
        decimals=0, aggregate=("sum", 7), season=0.35, noise=0.07, wiggle=0.03, surge=True,
        campaigns=CAMPAIGNS, lift=0.2,
        description="Marketing-qualified leads accepted by Sales, summed over the last seven days.",
    ),
    Spec(
        "mkt.cost_per_lead", "Cost per lead", MKT, None, "EUR", DECREASE, 45, {"warning": "110%", "critical": "130%"},
        ((182, 53), (100, 52), (28, 51.5), (21, 51), (7, 44), (0, 41.5)), decimals=2, season=0.04, noise=0.02,
        description="Paid media and agency spend divided by qualified leads, trailing 30 days.",
    ),
    Spec(
        "mkt.campaign_roi", "Campaign ROI", MKT, None, "%", INCREASE, 300, {"warning": 250, "critical": 180},
        ((182, 268), (150, 270), (140, 238), (130, 275), (90, 285), (30, 295), (0, 322)), decimals=0, noise=0.025,
    ),
    Spec(
        "mkt.web_conversion", "Web conversion rate", MKT, ANALYST, "%", INCREASE, 3.2,
        {"warning": "95%", "critical": "85%"}, ((182, 3.26), (60, 3.2), (21, 3.15), (0, 2.88)), decimals=2,
        season=0.02, noise=0.012, wiggle=0.008,
    ),
    Spec(
        "mkt.mql_sql", "MQL to SQL conversion", MKT, None, "%", INCREASE, 30, {"warning": 27, "critical": 22},
        ((182, 29.2), (60, 29.5), (21, 29.2), (0, 24.5)), noise=0.015,
        description="Share of marketing-qualified leads that Sales accepts; the campaign brings many early leads.",
    ),
    Spec(
        "mkt.brand_nps", "Brand NPS", MKT, None, "points", INCREASE, 40, {"warning": 35, "critical": 25},
        ((182, 38), (0, 40)), decimals=0, noise=0.015, stops_days_ago=6,
        description="Weekly panel survey; the agency's export has not arrived since last week.",
    ),
    Spec(
        "mkt.email_ctr", "Email click-through rate", MKT, ANALYST, "%", INCREASE, 3.5,
        {"warning": 3.0, "critical": 2.2}, ((182, 3.3), (120, 3.35), (110, 2.85), (100, 3.35), (0, 3.6)),
        decimals=2, season=0.03, noise=0.02,
    ),
    Spec(
        "mkt.cac_payback", "CAC payback", MKT, ANALYST, "months", DECREASE, 12, {"warning": 14, "critical": 18},
        ((182, 13.0), (0, 11.4)), noise=0.015,
    ),
    # --- Supply Chain: falls behind the demand ------------------------------------------------------------
    Spec(
        "sc.inventory_turnover", "Inventory turnover", SC, None, "turns/yr", INCREASE, 8.5,
        {"warning": 7.5, "critical": 6.5},
        ((182, 7.8), (120, 7.95), (60, 8.1), (28, 8.05), (21, 8.0), (14, 7.3), (7, 6.5), (0, 5.9)),
        decimals=2, noise=0.012,
        description="Cost of goods sold over average inventory, annualised; stock bought for the launch piles up.",
    ),
    Spec(
        "sc.otif", "On-time in full", SC, None, "%", INCREASE, 97, {"warning": "97%", "critical": "92%"},
        ((182, 95.4), (60, 95.7), (21, 95.6), (10, 93.6), (0, 91.7)), cap=100, noise=0.004, wiggle=0.004,
        description="Orders delivered complete on the promised day.",
    ),
    Spec(
        "sc.dc_utilisation", "DC utilisation", SC, None, "%", RANGE, 82,
        {"warning": [75, 90], "critical": [65, 95]}, ((182, 79), (60, 83), (21, 84), (10, 89), (0, 92.6)),
        noise=0.007, wiggle=0.006,
        description="Occupied pallet positions in the Leipzig distribution centre.",
    ),
    Spec(
        "sc.stockout_rate", "Stock-out rate", SC, PLANNER, "%", DECREASE, 2, {"warning": 3, "critical": 5},
        ((182, 2.2), (60, 2.05), (21, 2.3), (10, 3.6), (0, 5.9)), decimals=2, noise=0.03,
        campaigns=tuple(day - STOCKOUT_LAG for day in CAMPAIGNS), lift=0.25,
    ),
    Spec(
        "sc.freight_cost_unit", "Freight cost per unit", SC, None, "EUR", DECREASE, 1.8,
        {"warning": 2.0, "critical": 2.4}, ((182, 1.82), (21, 1.84), (10, 2.2), (0, 2.7)), decimals=2, noise=0.015,
    ),
    Spec(
        "sc.supplier_lead_time", "Supplier lead time", SC, PLANNER, "days", DECREASE, 21,
        {"warning": 25, "critical": 32}, ((182, 22.5), (0, 22.8)), noise=0.015, stops_days_ago=8,
        description="Median days from purchase order to goods receipt; the supplier portal export broke.",
    ),
    Spec(
        "sc.forecast_accuracy", "Forecast accuracy", SC, PLANNER, "%", INCREASE, 85, {"warning": 80, "critical": 70},
        ((182, 83.5), (21, 84.5), (0, 75.5)), cap=100, noise=0.008,
    ),
    Spec(
        "sc.order_cycle_time", "Order cycle time", SC, None, "days", DECREASE, 3, {"warning": 3.5, "critical": 5},
        ((182, 3.15), (100, 3.1), (90, 3.75), (80, 3.1), (21, 2.95), (0, 3.05)), decimals=2, noise=0.02,
    ),
    Spec(
        "sc.picking_accuracy", "Picking accuracy", SC, PLANNER, "%", INCREASE, 99.5,
        {"warning": 99.0, "critical": 98.0}, ((182, 99.45), (150, 99.45), (140, 98.85), (130, 99.45), (0, 99.6)),
        decimals=2, cap=100, noise=0.001,
        wiggle=0.001,
    ),
    Spec(
        "sc.co2_per_unit", "CO2 per unit shipped", SC, None, "kg CO2e", DECREASE, 0.8,
        {"warning": 0.9, "critical": 1.1}, (), decimals=2, no_data=True,
        description="New this week; the carrier emissions feed is not connected yet.",
    ),
    # --- Sales -----------------------------------------------------------------------------------------
    Spec(
        "sales.bookings", "Bookings per week", SALES, None, "EUR", INCREASE, 1_200_000,
        {"warning": "90%", "critical": "75%"},
        ((182, 170_000), (130, 173_000), (120, 148_000), (110, 150_000), (100, 172_000), (21, 172_000), (0, 192_000)),
        decimals=0, aggregate=("sum", 7), season=0.5, noise=0.08, wiggle=0.02,
    ),
    Spec(
        "sales.win_rate", "Win rate", SALES, None, "%", INCREASE, 28, {"warning": 25, "critical": 20},
        ((182, 27.8), (60, 29), (0, 28.6)), noise=0.012, last=23.6,
        description="Closed-won over closed deals, trailing 90 days.",
    ),
    Spec(
        "sales.pipeline_coverage", "Pipeline coverage", SALES, None, "x", INCREASE, 3.0,
        {"warning": 2.5, "critical": 2.0}, ((182, 2.85), (60, 2.95), (21, 3.0), (0, 3.6)), decimals=2, noise=0.015,
    ),
    Spec(
        "sales.avg_deal_size", "Average deal size", SALES, None, "EUR", INCREASE, 42_000,
        {"warning": 38_000, "critical": 32_000}, ((182, 40_800), (0, 43_900)), decimals=0,
        aggregate=("avg", 30), noise=0.06, wiggle=0.02,
    ),
    Spec(
        "sales.churn", "Customer churn", SALES, None, "%", DECREASE, 1.5, {"warning": 2.0, "critical": 3.0},
        ((182, 1.7), (70, 1.65), (60, 2.25), (50, 1.55), (0, 1.35)), decimals=2, noise=0.03,
    ),
    Spec(
        "sales.cycle_length", "Sales cycle length", SALES, None, "days", DECREASE, 45, {"warning": 50, "critical": 60},
        ((182, 46.5), (90, 45.5), (0, 44)), decimals=0, noise=0.015,
    ),
    Spec(
        "sales.new_logos", "New customers per week", SALES, None, "customers", INCREASE, 12,
        {"warning": 10, "critical": 7}, ((182, 2.3), (21, 2.35), (0, 2.55)), decimals=0, aggregate=("sum", 7),
        season=0.4, noise=0.2,
    ),
    # --- Finance: pays for the air freight ------------------------------------------------------------
    Spec(
        "fin.gross_margin", "Gross margin", FIN, None, "%", INCREASE, 42, {"warning": 40, "critical": 37},
        ((182, 40.9), (60, 41.3), (21, 41.1), (0, 38.6)), noise=0.005,
    ),
    Spec(
        "fin.dso", "Days sales outstanding", FIN, CONTROLLER, "days", DECREASE, 45, {"warning": 50, "critical": 60},
        ((182, 47.5), (100, 46.5), (90, 52), (80, 47), (0, 44)), noise=0.01,
    ),
    Spec(
        "fin.opex_vs_budget", "Opex vs budget", FIN, CONTROLLER, "%", RANGE, 100,
        {"warning": [95, 102], "critical": [90, 108]},
        ((182, 98), (110, 100.5), (100, 103.6), (90, 101), (30, 99.3), (0, 99.6)),
        noise=0.005,
    ),
    Spec(
        "fin.cash_runway", "Cash runway", FIN, None, "months", INCREASE, 24, {"warning": 18, "critical": 12},
        ((182, 27), (0, 25.5)), noise=0.008,
    ),
    Spec(
        "fin.air_freight", "Air-freight spend per week", FIN, CONTROLLER, "EUR", DECREASE, 40_000,
        {"warning": 50_000, "critical": 65_000},
        ((182, 5_900), (60, 6_100), (21, 6_150), (14, 7_400), (7, 9_800), (0, 12_400)),
        decimals=0, aggregate=("sum", 7), season=0.3, noise=0.12,
        description="Express air shipments booked to cover stock-outs, summed over seven days.",
    ),
    Spec(
        "fin.ebitda_margin", "EBITDA margin", FIN, None, "%", INCREASE, 14, {"warning": "95%", "critical": "85%"},
        ((182, 1.0), (60, 1.02), (21, 1.02), (0, 0.995)), baseline=10, on_pace=True, noise=0.006, wiggle=0.004,
    ),
    Spec(
        "fin.close_days", "Month-end close", FIN, CONTROLLER, "days", DECREASE, 5, {"warning": 6, "critical": 8},
        ((182, 6.4), (120, 5.9), (60, 5.2), (0, 4.8)), noise=0.015,
    ),
    Spec(
        "fin.cash_conversion", "Cash conversion cycle", FIN, None, "days", DECREASE, 60,
        {"warning": 70, "critical": 85}, ((182, 65), (21, 63), (0, 77)), decimals=0, noise=0.01,
    ),
    # --- Leadership (and People) ----------------------------------------------------------------------
    Spec(
        "lead.revenue_growth", "Revenue growth (YoY)", LEAD, CEO, "%", INCREASE, 12,
        {"warning": "95%", "critical": "85%"}, ((182, 0.98), (60, 1.01), (21, 1.01), (0, 0.99)), baseline=8,
        on_pace=True, noise=0.006, wiggle=0.004,
        description="Year-on-year revenue growth; the plan climbs from 8% to 12% by the end of the quarter.",
    ),
    Spec(
        "lead.employee_nps", "Employee NPS", "people", None, "points", INCREASE, 30, {"warning": 20, "critical": 10},
        ((182, 1.0), (0, 1.04)), decimals=0, baseline=24, on_pace=True, noise=0.02,
        alt_team=LEAD, alt_owner=CEO,
    ),
    Spec(
        "lead.regretted_attrition", "Regretted attrition", "people", None, "%", DECREASE, 6,
        {"warning": 8, "critical": 10}, ((182, 6.8), (0, 5.6)), noise=0.01, alt_team=LEAD, alt_owner=COO,
    ),
    Spec(
        "lead.time_to_hire", "Time to hire", "people", None, "days", DECREASE, 35, {"warning": 40, "critical": 50},
        ((182, 35.5), (60, 36.5), (30, 38), (0, 45)), decimals=0, noise=0.012, alt_team=LEAD, alt_owner=COO,
    ),
    Spec(
        "lead.revenue_per_employee", "Revenue per employee", LEAD, COO, "kEUR", INCREASE, 250,
        {"warning": 230, "critical": 200}, ((182, 243), (0, 256)), decimals=0, noise=0.006,
    ),
    Spec(
        "lead.customer_nps", "Customer NPS", LEAD, COO, "points", INCREASE, 45, {"warning": 40, "critical": 30},
        ((182, 44.5), (90, 45), (80, 38.5), (70, 45), (21, 47), (0, 44)), decimals=0, noise=0.02,
    ),
    Spec(
        "lead.strategic_projects", "Strategic projects on schedule", LEAD, CEO, "%", INCREASE, 80,
        {"warning": 70, "critical": 50}, ((182, 78), (60, 72), (21, 60), (0, 44)), decimals=0, noise=0.02,
    ),
]
# fmt: on

EXEC_SCORECARD = [
    "mkt.leads",
    "mkt.cost_per_lead",
    "sc.inventory_turnover",
    "sc.otif",
    "sc.dc_utilisation",
    "sales.bookings",
    "sales.win_rate",
    "sales.pipeline_coverage",
    "fin.gross_margin",
    "fin.air_freight",
    "fin.cash_runway",
    "lead.revenue_growth",
]
PENDING_KPI = "sales.win_rate"
TRANSFER_KPI = "sales.avg_deal_size"


# --- small helpers ------------------------------------------------------------------------------------------
