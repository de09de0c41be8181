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
from datetime import UTC, date, datetime, time, timedelta

from django.utils import timezone

from demo.story import (
    CAMPAIGN_DAYS,
    CEO,
    CONTROLLER,
    EXEC_SCORECARD,
    FIN,
    HISTORY_DAYS,
    LEAD,
    MEASURED_AT,
    MKT,
    PENDING_AGE,
    PENDING_KPI,
    PLANNER,
    RECOVERY_MARGIN,
    SALES,
    SC,
    SETTINGS,
    SEVERITY,
    SPECS,
    TRANSFER_KPI,
    WEEK,
    Spec,
)
from governance.models import Membership, Organization, Team
from scorecards.evaluation.thresholds import DECREASE, INCREASE, RANGE, Thresholds, parse_thresholds, raw_status
from scorecards.models import (
    CheckIn,
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
        lift = spec.lift if any(start >= days_ago > start - CAMPAIGN_DAYS for start in spec.campaigns) else 0.0
        value = level * (1 + spec.season * WEEK[day.weekday()] + wave + noise + lift)
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
