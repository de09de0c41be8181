"""The demo scorecards of Acme Electronics: KPIs with six months of data, their state, OKRs and scorecards.

Called by `seed_demo` inside its transaction, once, after the teams and people exist. Everything is generated
deterministically (one `random.Random` per KPI key) and written with bulk inserts.

The founding story shows in the last three weeks: Marketing's launch campaign makes qualified leads surge while
Supply Chain falls behind (inventory turnover and on-time-in-full degrade, the DC runs above its range) and
Finance pays for it in air freight. The campaign went live six days ago: this week's leads are some 45% above last
week's, a surge by the KPI's own rule (30% over 7 days) that the first real evaluation sweep records, and which the
engine carries to Supply Chain as a dependency review (demo.workstreams).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.utils import timezone

from governance import tenancy
from governance.durations import parse_duration
from governance.models import Membership, Organization, Role, Team
from governance.services.secrets import secret_set
from scorecards.evaluation.thresholds import DECREASE, INCREASE, RANGE, Thresholds, parse_thresholds, raw_status
from scorecards.models import (
    CheckIn,
    DataSource,
    DataSourceRun,
    KeyResult,
    Kpi,
    KpiSchedule,
    Measurement,
    Objective,
    OwnershipTransfer,
    Scorecard,
    StatusChange,
)
from scorecards.services import ownership_transfer_request

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
    alt_team: str | None = None  # when `team` does not exist in the organization
    alt_owner: str | None = None
    description: str = ""


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


def quarter_of(day: date) -> tuple[date, date]:
    start = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    following = date(start.year + (start.month == 10), (start.month + 3 - 1) % 12 + 1, 1)
    return start, following - timedelta(days=1)


def _interpolate(knots: tuple[tuple[int, float], ...], days_ago: int) -> float:
    points = sorted(knots, reverse=True)  # oldest first
    if days_ago >= points[0][0]:
        return points[0][1]
    for (a_days, a_level), (b_days, b_level) in zip(points, points[1:], strict=False):
        if b_days <= days_ago <= a_days:
            share = (a_days - days_ago) / (a_days - b_days)
            return a_level + (b_level - a_level) * share
    return points[-1][1]


def _pace(spec: Spec, day: date, q_start: date, q_end: date) -> float:
    share = min(1.0, max(0.0, (day - q_start).days / (q_end - q_start).days))
    return spec.baseline + (spec.target - spec.baseline) * share


def _fmt(value: float, decimals: int, unit: str = "") -> str:
    text = f"{value:,.{decimals}f}"
    return f"{text}%" if unit == "%" else f"{text} {unit}".rstrip()


def _worse(a: str, b: str) -> str:
    return a if SEVERITY[a] >= SEVERITY[b] else b


def _recovered(value: float, t: Thresholds) -> str:
    """The status `value` earns when it must beat each threshold by the recovery margin."""
    margin = abs(value) * RECOVERY_MARGIN
    if t.direction == INCREASE:
        return raw_status(value - margin, t)
    if t.direction == DECREASE:
        return raw_status(value + margin, t)
    return _worse(raw_status(value - margin, t), raw_status(value + margin, t))


def _reason(spec: Spec, value: float, t: Thresholds, status: str) -> str:
    d, u = spec.decimals, spec.unit
    fn = {"sum": "sum", "avg": "average"}
    subject = f"{spec.aggregate[1]}-day {fn[spec.aggregate[0]]} " if spec.aggregate else ""
    v = subject + _fmt(value, d, u)
    if t.direction == RANGE:
        (w_lo, w_hi), (c_lo, c_hi) = t.warning, t.critical
        warning_band, critical_band = f"{_fmt(w_lo, d)}-{_fmt(w_hi, d, u)}", f"{_fmt(c_lo, d)}-{_fmt(c_hi, d, u)}"
        if status == "on_track":
            return f"{v} inside the warning band {warning_band}"
        if status == "at_risk":
            return f"{v} outside the warning band {warning_band}, inside the critical band {critical_band}"
        return f"{v} outside the critical band {critical_band}"
    better, worse = (">=", "<") if t.direction == INCREASE else ("<=", ">")
    if status == "on_track":
        return f"{v} {better} warning {_fmt(t.warning, d, u)}"
    if status == "at_risk":
        return f"{v} {worse} warning {_fmt(t.warning, d, u)} (critical {_fmt(t.critical, d, u)})"
    return f"{v} {worse} critical {_fmt(t.critical, d, u)}"


def _thresholds_json(t: Thresholds, decimals: int) -> dict:
    def r(x):
        return (
            [round(x[0], decimals + 2), round(x[1], decimals + 2)] if isinstance(x, tuple) else round(x, decimals + 2)
        )

    return {"warning": r(t.warning), "critical": r(t.critical)}


def _series(spec: Spec, days: list[date], q_start: date, q_end: date) -> list[float]:
    """The daily values, oldest first: trend (knots) x (1 + weekly season + slow wave + AR(1) noise)."""
    rng = random.Random(f"steerco-demo:{spec.key}")
    period, phase = rng.uniform(24, 45), rng.uniform(0, 2 * math.pi)
    noise, values = 0.0, []
    for i, day in enumerate(days):
        days_ago = len(days) - 1 - i
        level = _interpolate(spec.path, days_ago)
        if spec.on_pace:
            level *= _pace(spec, day, q_start, q_end)
        noise = 0.6 * noise + 0.8 * rng.gauss(0, spec.noise)
        wave = spec.wiggle * math.sin(2 * math.pi * i / period + phase)
        value = level * (1 + spec.season * WEEK[day.weekday()] + wave + noise)
        if spec.cap is not None:
            value = min(spec.cap, value)
        values.append(round(max(0.0, value), spec.decimals))
    if spec.last is not None:
        values[-1] = spec.last
    return values


def _evaluated(spec: Spec, values: list[float], i: int) -> float:
    """The KPI's value evaluated at point i: fn over the window ending there (daily points)."""
    if not spec.aggregate:
        return values[i]
    fn, window = spec.aggregate
    chunk = values[max(0, i - window + 1) : i + 1]
    return round(sum(chunk) if fn == "sum" else sum(chunk) / len(chunk), spec.decimals + 2)


def _ingested(key: str, newest: bool, at: datetime, moment: datetime) -> datetime:
    """A few minutes after the value's time; the pending KPI's newest value arrived late, just before it broke."""
    if newest and key == PENDING_KPI:
        return max(at, moment - PENDING_AGE - timedelta(minutes=1))
    return at + timedelta(minutes=4)


def _round_up_to_hour(at: datetime) -> datetime:
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(hours=1)


# --- the seed -----------------------------------------------------------------------------------------------


def seed_scorecards(org: Organization, *, today: date | None = None) -> None:
    """Creates Acme's KPIs (with history and evaluator state), objectives, scorecards and a pending transfer."""
    tz = org.tzinfo
    moment = timezone.now()
    if today is None:
        today = moment.astimezone(tz).date()
    elif today != moment.astimezone(tz).date():
        moment = datetime.combine(today, time(12), tzinfo=tz).astimezone(UTC)  # a fixed demo "now"
    newest_day = today if moment >= datetime.combine(today, MEASURED_AT, tzinfo=tz) else today - timedelta(days=1)
    days = [newest_day - timedelta(days=n) for n in range(HISTORY_DAYS - 1, -1, -1)]
    stamps = [datetime.combine(day, MEASURED_AT, tzinfo=tz).astimezone(UTC) for day in days]
    q_start, q_end = quarter_of(today)

    members = {
        m.user.email: m for m in Membership.objects.filter(organization=org, is_active=True).select_related("user")
    }
    teams = {t.key: t for t in Team.objects.filter(organization=org).select_related("lead__user")}

    def owner_of(spec: Spec, team: Team) -> Membership:
        email = spec.owner if team.key == spec.team else spec.alt_owner
        candidates = [members.get(email) if email else None, team.lead, members.get(CEO)]
        fallback = sorted(members.values(), key=lambda m: (m.role != "executive", m.pk))
        return next(m for m in [*candidates, *fallback] if m is not None and m.is_active)

    kpis: list[Kpi] = []
    schedules: list[KpiSchedule] = []
    histories: dict[str, list[float]] = {}
    changes: dict[str, list[StatusChange]] = {}
    created_at = stamps[0] - timedelta(days=1)
    for spec in SPECS:
        team = teams.get(spec.team) or teams.get(spec.alt_team or "")
        if team is None:
            continue
        parsed = parse_thresholds(spec.direction, spec.thresholds, has_target=spec.target is not None)
        kpi = Kpi(
            organization=org,
            key=spec.key,
            name=spec.name,
            description=spec.description,
            team=team,
            owner=owner_of(spec, team),
            unit=spec.unit,
            direction=spec.direction,
            aggregate_fn=spec.aggregate[0] if spec.aggregate else "last",
            aggregate_window=timedelta(days=spec.aggregate[1]) if spec.aggregate else None,
            target_value=spec.target,
            target_by=q_end if spec.baseline is not None else None,
            baseline_value=spec.baseline,
            baseline_at=q_start if spec.baseline is not None else None,
            thresholds=spec.thresholds,
            surge_change="30%" if spec.surge else "",
            surge_window=timedelta(days=7) if spec.surge else None,
            created_at=created_at,
            **SETTINGS,
        )
        kpis.append(kpi)
        schedules.append(
            KpiSchedule(
                kpi=kpi,
                organization=org,
                evaluated_at=moment,
                next_evaluation_at=moment + SETTINGS["evaluate_every"],
                # The walk below stands in for the evaluator's past runs but knows nothing of surges: the newest
                # value of a surge KPI is left for the real sweep (evaluate_due), which records the surge from the data.
                needs_evaluation=spec.surge,
            )
        )
        if spec.no_data:
            kpi.created_at = moment - timedelta(days=2, hours=3)
            kpi.status, kpi.status_since, kpi.reason = "no_data", kpi.created_at, "No measurement has arrived yet."
            changes[spec.key] = []
            continue

        values = _series(spec, days, q_start, q_end)
        count = len(values) - spec.stops_days_ago
        histories[spec.key] = values[:count]

        def reference(i: int, spec=spec) -> float | None:
            return _pace(spec, days[i], q_start, q_end) if spec.baseline is not None else spec.target

        # Walk the history as the evaluator would have, one evaluation per daily point. A worse status takes
        # over at once (pending_for 2h is shorter than a day); a better one needs the recovery margin.
        status, rows = "no_data", []
        first = spec.aggregate[1] - 1 if spec.aggregate else 0
        newest = count - 1
        for i in range(first, count):
            value = _evaluated(spec, values, i)
            t = parsed.resolve(reference(i))
            raw = raw_status(value, t)
            if i == newest:
                kpi.last_value, kpi.last_measured_at = value, stamps[i]
                kpi.reason = _reason(spec, value, t, raw)
                if spec.key == PENDING_KPI and raw != status:
                    kpi.pending_status, kpi.pending_since = raw, moment - PENDING_AGE
                    kpi.reason += f"; {raw.replace('_', ' ')}, pending for {PENDING_AGE.seconds // 60}m of 2h"
                    break
                new = raw  # the current status is the raw status of the newest value
            elif status == "no_data" or SEVERITY[raw] > SEVERITY[status]:
                new = raw
            else:
                new = _recovered(value, t) if SEVERITY[raw] < SEVERITY[status] else status
                new = new if SEVERITY[new] < SEVERITY[status] else status
            if new != status:
                rows.append(
                    StatusChange(
                        organization=org,
                        kpi=kpi,
                        old=status,
                        new=new,
                        value=value,
                        thresholds=_thresholds_json(t, spec.decimals),
                        reason=_reason(spec, value, t, new),
                        changed_at=stamps[i],
                        processed_at=stamps[i],
                    )
                )
                status = new
        if spec.stops_days_ago:
            went_stale = _round_up_to_hour(kpi.last_measured_at + SETTINGS["stale_after"])
            since = kpi.last_measured_at.astimezone(tz)
            kpi.reason = f"No measurement since {since:%Y-%m-%d %H:%M} (stale after 3d); last {kpi.reason}"
            rows.append(
                StatusChange(
                    organization=org,
                    kpi=kpi,
                    old=status,
                    new="stale",
                    value=kpi.last_value,
                    thresholds=rows[-1].thresholds if rows else {},
                    reason=kpi.reason,
                    changed_at=went_stale,
                    processed_at=went_stale,
                )
            )
            status = "stale"
        kpi.status = status
        kpi.status_since = rows[-1].changed_at if rows else created_at
        changes[spec.key] = rows

    Kpi.objects.bulk_create(kpis)
    KpiSchedule.objects.bulk_create(schedules)
    by_key = {kpi.key: kpi for kpi in kpis}
    Measurement.objects.bulk_create(
        [
            Measurement(
                organization=org,
                kpi=by_key[key],
                at=stamps[i],
                value=value,
                source="api",
                ingested_at=_ingested(key, i == len(values) - 1, stamps[i], moment),
            )
            for key, values in histories.items()
            for i, value in enumerate(values)
        ],
        batch_size=2000,
    )
    StatusChange.objects.bulk_create([row for rows in changes.values() for row in rows], batch_size=2000)

    _seed_objectives(org, by_key, histories, members, teams, days, today, moment)
    _seed_scorecards(org, by_key, teams)
    _seed_transfer(org, by_key, teams, moment)


def _seed_objectives(org, by_key, histories, members, teams, days, today, moment) -> None:
    q_start, q_end = quarter_of(today)
    # A key result starts where its KPI stood when the quarter began (at least four weeks back, before the
    # current story, when the quarter is young).
    anchor = min(q_start, today - timedelta(days=28))
    anchor_index = next((i for i, day in enumerate(days) if day >= anchor), 0)

    def start_of(kpi: Kpi) -> float:
        if kpi.baseline_value is not None:
            return kpi.baseline_value
        spec = next(s for s in SPECS if s.key == kpi.key)
        value = _evaluated(spec, histories[kpi.key], max(anchor_index, (spec.aggregate or ("", 1))[1] - 1))
        # A key result worth setting starts at least 15% short of its target; a start next to the target
        # would turn small wobbles into progress of several hundred percent.
        gap = 0.15 * abs(kpi.target_value)
        return min(value, kpi.target_value - gap) if kpi.direction == "increase" else max(value, kpi.target_value + gap)

    def lead_of(team_key: str) -> Membership:
        team = teams.get(team_key)
        return team.lead if team and team.lead and team.lead.is_active else members[CEO]

    ceo = members.get(CEO) or lead_of(LEAD)
    company = Objective.objects.create(
        organization=org,
        key="o.profitable-launch",
        title="Turn the launch season into profitable growth",
        owner=ceo,
        team=teams[LEAD],
        period_start=q_start,
        period_end=q_end,
    )
    children_plan = [
        ("o.demand", "Turn the launch campaign into pipeline", MKT),
        ("o.fulfilment", "Deliver every order on time without burning cash on freight", SC),
        ("o.margin", "Protect the margin while we grow", FIN),
    ]
    children = Objective.objects.bulk_create(
        [
            Objective(
                organization=org,
                key=key,
                title=title,
                owner=lead_of(team),
                team=teams[team],
                period_start=q_start,
                period_end=q_end,
                parent=company,
            )
            for key, title, team in children_plan
        ]
    )
    objective = {
        "company": company,
        **{team: child for child, (_k, _t, team) in zip(children, children_plan, strict=True)},
    }

    def linked(obj: str, key: str, title: str, kpi_key: str) -> KeyResult | None:
        kpi = by_key.get(kpi_key)
        if kpi is None:
            return None
        return KeyResult(
            organization=org,
            objective=objective[obj],
            key=key,
            title=title,
            kpi=kpi,
            start=round(start_of(kpi), 2),
            target=kpi.target_value,
        )

    # Key results checked in by hand: objective's team, owner, title, start, target, check-ins (days ago, value).
    manual = {
        "kr.dual-source": (
            SC,
            PLANNER,
            "Qualify a second supplier for the top 20 SKUs",
            0,
            20,
            [(40, 4), (20, 9), (5, 12)],
        ),
        "kr.price-list": (FIN, CONTROLLER, "Move 40 key accounts to the 2027 price list", 0, 40, [(25, 11), (9, 24)]),
    }
    key_results = [
        linked("company", "kr.revenue-growth", "Grow revenue 12% year on year", "lead.revenue_growth"),
        linked(MKT, "kr.leads", "Reach 1,200 qualified leads a week", "mkt.leads"),
        linked(MKT, "kr.cost-per-lead", "Bring the cost per lead down to EUR 45", "mkt.cost_per_lead"),
        linked(MKT, "kr.mql-sql", "Convert 30% of MQLs into SQLs", "mkt.mql_sql"),
        linked(SC, "kr.otif", "Deliver 97% of orders on time and in full", "sc.otif"),
        linked(SC, "kr.turnover", "Turn the inventory 8.5 times a year", "sc.inventory_turnover"),
        linked(FIN, "kr.gross-margin", "Hold gross margin at 42%", "fin.gross_margin"),
        linked(FIN, "kr.air-freight", "Keep air freight under EUR 40k a week", "fin.air_freight"),
    ]
    check_ins = []
    for key, (team, email, title, start, target, points) in manual.items():
        owner = members.get(email) or lead_of(team)
        # Check-ins happened during this quarter: early in a quarter they are squeezed into the days so far.
        squeeze = min(1.0, (today - q_start).days / points[0][0])
        points = [(round(ago * squeeze), value) for ago, value in points]
        kr = KeyResult(
            organization=org,
            objective=objective[team],
            key=key,
            title=title,
            owner=owner,
            start=start,
            target=target,
            current=points[-1][1],
        )
        key_results.append(kr)
        for ago, value in points:
            at = min(moment, datetime.combine(today - timedelta(days=ago), time(16, 30), tzinfo=org.tzinfo))
            note = f"{value} of {target} done" if value < target else "Done"
            check_ins.append(CheckIn(organization=org, key_result=kr, value=value, note=note, by=owner.user, at=at))
    KeyResult.objects.bulk_create([kr for kr in key_results if kr is not None])
    CheckIn.objects.bulk_create(check_ins)


def _seed_scorecards(org, by_key, teams) -> None:
    cards = [Scorecard(organization=org, key="exec", name="Company scorecard", viewers=["role:executive"])]
    team_list = sorted(teams.values(), key=lambda team: team.name)
    cards += [Scorecard(organization=org, key=f"team-{team.key}", name=f"{team.name} scorecard") for team in team_list]
    Scorecard.objects.bulk_create(cards)
    Scorecard.kpis.through.objects.bulk_create(
        [Scorecard.kpis.through(scorecard_id=cards[0].pk, kpi_id=by_key[k].pk) for k in EXEC_SCORECARD if k in by_key]
    )
    Scorecard.teams.through.objects.bulk_create(
        [
            Scorecard.teams.through(scorecard_id=card.pk, team_id=team.pk)
            for card, team in zip(cards[1:], team_list, strict=True)
        ]
    )


def _seed_transfer(org, by_key, teams, moment) -> None:
    """A pending transfer of a Sales KPI from the Sales lead to a colleague (through the audited service)."""
    kpi, sales = by_key.get(TRANSFER_KPI), teams.get(SALES)
    if kpi is None or sales is None or sales.lead is None or kpi.owner_id != sales.lead_id:
        return
    colleagues = Membership.objects.filter(organization=org, is_active=True).exclude(pk=sales.lead_id)
    # Another Sales member when there is one; else Finance's controller, who builds the deal-size numbers.
    to_owner = (
        colleagues.filter(teams=sales).select_related("user").order_by("pk").first()
        or colleagues.filter(user__email=CONTROLLER).select_related("user").first()
    )
    if to_owner is None:
        return
    transfer = ownership_transfer_request(
        kpi=kpi,
        requester=sales.lead,
        to_owner=to_owner,
        reason=(
            f"{to_owner.user.name} prepares the deal-size figures every week and should own them; I stay "
            "accountable for bookings and win rate."
        ),
    )
    OwnershipTransfer.objects.filter(pk=transfer.pk).update(requested_at=moment - timedelta(days=1, hours=2))


# --- data sources -------------------------------------------------------------------------------------------

WAREHOUSE_KPIS = ("sc.inventory_turnover", "sc.otif")
WAREHOUSE_QUERY = "select day as at, {column} as value from kpi.daily_supply_chain where day > %(since)s order by day"
PANEL_KPI = "mkt.brand_nps"
PANEL_HOST = "panel.example-agency.test"
PULL_HISTORY_DAYS = 10
WAREHOUSE_SECRET, PANEL_SECRET = "warehouse_dsn", "nps_panel_token"


def seed_data_sources(org: Organization) -> None:
    """Two scheduled pulls with a history of runs: the warehouse (healthy; one query timed out last week) and
    the NPS agency's API (failing since its token stopped working, which is why Brand NPS went stale).

    Neither reaches a real system: once the demo runs, each records a clear error at its next run and then
    backs off to every 6 hours, so the workers never fail a pull every minute.
    """
    tz, moment = org.tzinfo, timezone.now()
    today = moment.astimezone(tz).date()
    by_key = {kpi.key: kpi for kpi in Kpi.objects.for_org(org).filter(key__in=[*WAREHOUSE_KPIS, PANEL_KPI])}
    runs: list[DataSourceRun] = []
    admin = Membership.objects.filter(organization=org, role=Role.ADMIN).select_related("user").first()
    # The credentials the sources name, as the admin set them (Administration → Secrets); only the organization's
    # own scope sees secrets, not the seeding command's.
    with tenancy.scope(organization=org.pk):
        for name, value in [
            (WAREHOUSE_SECRET, "postgresql://steerco_reader@warehouse.acme.test:5432/kpis"),
            (PANEL_SECRET, "Bearer demo-agency-token-since-rotated"),
        ]:
            secret_set(org=org, actor=admin.user if admin else None, name=name, value=value)

    def local(day: date, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)

    def run(source: DataSource, at: datetime, took: timedelta, rows: int = 0, error: str = "") -> None:
        runs.append(
            DataSourceRun(organization=org, source=source, started_at=at, finished_at=at + took, rows=rows, error=error)
        )

    if all(key in by_key for key in WAREHOUSE_KPIS):
        warehouse = DataSource.objects.create(
            organization=org,
            key="warehouse",
            kind="sql",
            every=timedelta(days=1),
            config={
                "dsn_secret": WAREHOUSE_SECRET,
                "pulls": [
                    {"kpi": "sc.inventory_turnover", "query": WAREHOUSE_QUERY.format(column="inventory_turnover")},
                    {"kpi": "sc.otif", "query": WAREHOUSE_QUERY.format(column="otif_pct")},
                ],
            },
        )
        # Daily at 08:05, just after the nightly load; four days ago the OTIF query hit the statement timeout
        # and the retry six hours later (the backoff) caught up.
        days = [today - timedelta(days=n) for n in range(PULL_HISTORY_DAYS, -1, -1)]
        for day in days:
            at = local(day, 8, 5)
            if at > moment:
                continue
            if day == today - timedelta(days=4):
                error = "the query for sc.otif ran longer than 30 s and was cancelled"
                run(warehouse, at, timedelta(seconds=30.4), error=error)
                run(warehouse, at + timedelta(hours=6), timedelta(seconds=6.2), rows=2)
            else:
                run(warehouse, at, timedelta(seconds=4.1), rows=2)
        next_day = today if local(today, 8, 5) > moment else today + timedelta(days=1)
        warehouse.next_run_at = local(next_day, 8, 5)
        warehouse.save(update_fields=["next_run_at"])
        Kpi.objects.filter(organization=org, key__in=WAREHOUSE_KPIS).update(data_source=warehouse)
        Measurement.objects.filter(kpi__in=[by_key[key] for key in WAREHOUSE_KPIS]).update(source="pull")

    if PANEL_KPI in by_key:
        panel = DataSource.objects.create(
            organization=org,
            key="nps-panel",
            kind="http_json",
            every=timedelta(days=1),
            config={
                "url": f"https://{PANEL_HOST}/v2/scores?metric=brand_nps&since={{since}}",
                "headers_secret": {"Authorization": PANEL_SECRET},
                "pulls": [{"kpi": PANEL_KPI, "items": "results", "at": "week_ending", "value": "nps"}],
            },
        )
        # Good daily runs until the agency rotated its token; since then every run is refused, retried every
        # 6 hours (a daily source's backoff is capped there).
        last_good = by_key[PANEL_KPI].last_measured_at
        stopped = last_good.astimezone(tz).date() if last_good else today - timedelta(days=6)
        for n in range(PULL_HISTORY_DAYS - 4, -1, -1):
            run(panel, local(stopped - timedelta(days=n), 9), timedelta(seconds=1.3), rows=1)
        at, failures = local(stopped + timedelta(days=1), 9), 0
        while at <= moment:
            run(panel, at, timedelta(seconds=0.4), error=f"{PANEL_HOST} answered HTTP 401 Unauthorized")
            at, failures = at + timedelta(hours=6), failures + 1
        panel.failures, panel.next_run_at = failures, at
        panel.save(update_fields=["failures", "next_run_at"])
        Kpi.objects.filter(organization=org, key=PANEL_KPI).update(data_source=panel)
        Measurement.objects.filter(kpi=by_key[PANEL_KPI]).update(source="pull")

    DataSourceRun.objects.bulk_create(runs)
