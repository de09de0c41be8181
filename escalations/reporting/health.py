"""Governance health: whether breaches reach decisions, week by week (the health page's selectors).

A metric is a function `(org, weeks) -> Metric` that reads the whole period in one query, however many weeks, KPIs
or teams there are; `METRICS` lists them in page order, and the page and its week-by-week table render whatever
it lists. Adding one is one more function and one more entry.

Weeks are the organization's calendar weeks, Monday 00:00 to Monday 00:00 local time (167 or 169 hours across a
DST change); the newest one is the week in progress and runs up to now. Snapshot metrics (stale share, overdue
actions) are read at each week's end; event metrics (approvals, escalations) count what happened inside it.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Case, Count, Expression, IntegerField, Min, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from escalations.models import Decision, MitigationAction, MitigationPath, ReviewSession, Task, Workstream
from governance import formats
from governance.models import Organization
from scorecards.models import Kpi, Status, StatusChange

WEEK_CHOICES = (4, 12, 26)
DEFAULT_WEEKS = 12
# The stacked escalation chart names this many teams; the rest add up as "Other teams".
TOP_TEAMS = 5


@dataclass(frozen=True)
class Week:
    start: datetime  # Monday 00:00 local, in UTC
    end: datetime  # exclusive: the next Monday 00:00 local, or now for the week in progress; in UTC
    in_progress: bool
    label: str  # "2 Nov": its Monday, in the organization's calendar


def calendar_weeks(*, org: Organization, count: int, now: datetime | None = None) -> list[Week]:
    """The last `count` calendar weeks of the organization, oldest first, the one in progress last."""
    now = now or timezone.now()
    tz = org.tzinfo
    today = formats.local_day(now, tz)
    monday = today - timedelta(days=today.weekday())
    weeks = []
    for back in range(count - 1, -1, -1):
        day = monday - timedelta(weeks=back)
        start = formats.midnight(day, tz)
        end = formats.midnight(day + timedelta(days=7), tz)
        weeks.append(Week(start, min(end, now), end > now, formats.day(day, year=False)))
    return weeks


def status_at(moment: datetime | Expression | OuterRef) -> Coalesce:
    """A KPI's official status at `moment`, for a Kpi queryset: the newest status change up to then
    (no change yet: no data). StatusChange is the history; Kpi.status only says what holds now."""
    newest = StatusChange.objects.filter(kpi=OuterRef("pk"), changed_at__lte=moment).order_by("-changed_at")
    return Coalesce(Subquery(newest.values("new")[:1]), Value(Status.NO_DATA))


def tracked_at(moment: datetime) -> Q:
    """KPIs that existed and were not archived at `moment`."""
    return Q(created_at__lte=moment) & (Q(archived_at=None) | Q(archived_at__gt=moment))


def week_index(weeks: list[Week], field_name: str) -> Case:
    """SQL for "which of `weeks` holds this row's `field_name`", with the weeks' exact UTC bounds, so the database
    buckets as Python does on any backend and across DST (rows must already be filtered to the period)."""
    return Case(
        *(When(**{f"{field_name}__lt": w.end}, then=Value(i)) for i, w in enumerate(weeks)),
        output_field=IntegerField(),
    )


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float]


@dataclass
class Metric:
    key: str
    title: str
    how: str  # how it is computed, in one or two sentences under the chart
    chart: str  # "line" or "bar" (several series: stacked bars)
    unit: str  # for the chart's axis: "days", "%", ""
    values: list[float | None]  # per week; None: nothing to measure that week
    cells: list[str]  # per week, for the week-by-week table
    headline: str  # the stat tile's value
    headline_label: str
    tone: str = ""  # the stat tile's colour: "", "ok", "warn", "bad"
    empty: str = ""  # set when there is nothing to chart: what the empty state says
    breakdown: list[Series] = field(default_factory=list)  # stacked series, biggest first
    column: str = ""  # the week-by-week table's short header; the title when empty
    by_owner: list[PromiseRecord] = field(default_factory=list)  # the same rows per team and owner, worst first

    @property
    def header(self) -> str:
        return self.column or self.title


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _format_days(days: float) -> str:
    if days < 1:
        return f"{round(days * 24):g} h"
    return f"{days:.1f} days"


def time_to_approval(org: Organization, weeks: list[Week]) -> Metric:
    """Median time from a breach (its mitigation workstream opening) to the episode's first approved path, by the
    week of that approval."""
    rows = (
        MitigationPath.objects.for_org(org)
        .filter(state=MitigationPath.State.APPROVED, workstream__kind=Workstream.Kind.MITIGATION)
        .values("workstream_id", "workstream__opened_at")
        .annotate(approved_at=Min("reviewed_at"))
        .filter(approved_at__gte=weeks[0].start, approved_at__lt=weeks[-1].end)
        .order_by()
    )
    starts = [w.start for w in weeks]
    by_week: list[list[float]] = [[] for _ in weeks]
    for row in rows:
        i = bisect.bisect_right(starts, row["approved_at"]) - 1
        by_week[i].append(_days(row["approved_at"] - row["workstream__opened_at"]))
    values = [statistics.median(d) if d else None for d in by_week]
    cells = [f"{_format_days(v)} ({len(d)})" if v is not None else "—" for v, d in zip(values, by_week, strict=True)]
    every = [d for week in by_week for d in week]
    overall = statistics.median(every) if every else None
    return Metric(
        key="time_to_approval",
        column="Breach to approval",
        title="Time from breach to approved path",
        how="Median time from a KPI's breach (its workstream opening) to the first approved mitigation path, by the "
        "week of the approval; in brackets, how many episodes were approved that week.",
        chart="line",
        unit="days",
        values=values,
        cells=cells,
        headline=_format_days(overall) if overall is not None else "—",
        headline_label=f"median breach to approval, {len(weeks)} weeks ({_count(len(every), 'approval')})",
        tone="" if overall is None else "ok" if overall <= 3 else "warn" if overall <= 7 else "bad",
        empty="" if every else "No mitigation path was approved in these weeks.",
    )


def escalations_per_team(org: Organization, weeks: list[Week]) -> Metric:
    """Escalation tasks created each week (one per person a level notified), by the team of the KPI."""
    rows = (
        Task.objects.for_org(org)
        .filter(kind=Task.Kind.ESCALATION, created_at__gte=weeks[0].start, created_at__lt=weeks[-1].end)
        .annotate(week=week_index(weeks, "created_at"))
        .values("week", "kpi__team__name")
        .annotate(n=Count("pk"))
        .order_by()
    )
    per_team: dict[str, list[float]] = {}
    for row in rows:
        per_team.setdefault(row["kpi__team__name"], [0] * len(weeks))[row["week"]] += row["n"]
    ranked = sorted(per_team.items(), key=lambda item: (-sum(item[1]), item[0]))
    breakdown = [Series(name, counts) for name, counts in ranked[:TOP_TEAMS]]
    if len(ranked) > TOP_TEAMS:
        rest = [sum(col) for col in zip(*(counts for _, counts in ranked[TOP_TEAMS:]), strict=True)]
        breakdown.append(Series(f"Other teams ({len(ranked) - TOP_TEAMS})", rest))
    totals = [sum(col) for col in zip(*(s.values for s in breakdown), strict=True)] if breakdown else [0] * len(weeks)
    total = int(sum(totals))
    return Metric(
        key="escalations",
        column="Escalations",
        title="Escalations per team",
        how="Escalation tasks created each week (one per person an escalation level reached), by the team that owns "
        "the KPI; dependency reviews count for the downstream KPI's team.",
        chart="bar",
        unit="",
        values=totals,
        cells=[f"{int(v)}" for v in totals],
        headline=f"{total}",
        headline_label=f"escalation task{'s' if total != 1 else ''} in {len(weeks)} weeks",
        tone="ok" if total == 0 else "warn",
        empty="" if total else "Nothing was escalated in these weeks.",
        breakdown=breakdown,
    )


def stale_share(org: Organization, weeks: list[Week]) -> Metric:
    """The share of tracked KPIs that were stale at each week's end, from the status history: one query whose
    correlated subqueries find each KPI's status at each week's end."""
    statuses = {f"status_{i}": status_at(w.end) for i, w in enumerate(weeks)}
    counts: dict[str, Count] = {}
    for i, w in enumerate(weeks):
        counts[f"tracked_{i}"] = Count("pk", filter=tracked_at(w.end))
        counts[f"stale_{i}"] = Count("pk", filter=tracked_at(w.end) & Q(**{f"status_{i}": Status.STALE}))
    row = Kpi.objects.for_org(org).annotate(**statuses).aggregate(**counts)
    values: list[float | None] = []
    cells = []
    for i in range(len(weeks)):
        tracked, stale = row[f"tracked_{i}"], row[f"stale_{i}"]
        values.append(100 * stale / tracked if tracked else None)
        cells.append(f"{100 * stale / tracked:.0f}% ({stale} of {tracked})" if tracked else "—")
    now = values[-1]
    return Metric(
        key="stale_share",
        column="Stale KPIs",
        title="Stale KPIs",
        how="Share of the KPIs tracked at each week's end whose official status was stale then (their data stopped "
        "arriving), read from the status history; the week in progress counts now.",
        chart="line",
        unit="%",
        values=values,
        cells=cells,
        headline=f"{now:.0f}%" if now is not None else "—",
        headline_label=f"of KPIs stale now ({row[f'stale_{len(weeks) - 1}']} of {row[f'tracked_{len(weeks) - 1}']})",
        tone="" if now is None else "ok" if now == 0 else "warn" if now < 10 else "bad",
        empty="" if any(row[f"tracked_{i}"] for i in range(len(weeks))) else "No KPI was tracked in these weeks.",
    )


def overdue_actions(org: Organization, weeks: list[Week]) -> Metric:
    """Actions of approved paths past their due date and not done, at each week's end (the organization's calendar
    decides "past": an action due on Sunday is overdue from Monday 00:00 local, as the escalation sweep sees it)."""
    tz = org.tzinfo
    counts = {}
    for i, w in enumerate(weeks):
        today = timezone.localtime(w.end, tz).date()
        counts[f"overdue_{i}"] = Count(
            "pk",
            filter=Q(due__lt=today, path__reviewed_at__lte=w.end)
            & (Q(done_at=None) | Q(done_at__gt=w.end))
            & (Q(path__workstream__resolved_at=None) | Q(path__workstream__resolved_at__gt=w.end)),
        )
    row = (
        MitigationAction.objects.for_org(org)
        .filter(path__state=MitigationPath.State.APPROVED, path__reviewed_at__lt=weeks[-1].end)
        .aggregate(**counts)
    )
    values = [row[f"overdue_{i}"] for i in range(len(weeks))]
    now = values[-1]
    return Metric(
        key="overdue_actions",
        column="Overdue actions",
        title="Overdue actions",
        how="Actions of approved mitigation paths that were past their due date and not done at each week's end, "
        "in open episodes; the week in progress counts now.",
        chart="bar",
        unit="",
        values=values,
        cells=[str(v) for v in values],
        headline=str(now),
        headline_label=f"overdue action{'s' if now != 1 else ''} now",
        tone="ok" if now == 0 else "bad",
        empty="" if any(values) else "No action of an approved path was overdue in these weeks.",
    )


def decisions_per_review(org: Organization, weeks: list[Week]) -> Metric:
    """Decisions recorded in the review sessions closed each week, per session: a review that decides nothing is
    a status meeting."""
    rows = (
        ReviewSession.objects.for_org(org)
        .filter(closed_at__gte=weeks[0].start, closed_at__lt=weeks[-1].end)
        .annotate(week=week_index(weeks, "closed_at"), n=Count("decisions"))
        .values_list("week", "n")
    )
    by_week: list[list[int]] = [[] for _ in weeks]
    for week, n in rows:
        by_week[week].append(n)
    values = [statistics.mean(d) if d else None for d in by_week]
    cells = [f"{statistics.mean(d):.1f} ({len(d)} review{'s' if len(d) != 1 else ''})" if d else "—" for d in by_week]
    every = [n for week in by_week for n in week]
    overall = statistics.mean(every) if every else None
    return Metric(
        key="decisions_per_review",
        column="Decisions per review",
        title="Decisions per review",
        how="Decisions recorded in the review sessions closed each week, per session; in brackets, how many "
        "sessions closed that week.",
        chart="line",
        unit="",
        values=values,
        cells=cells,
        headline=f"{overall:.1f}" if overall is not None else "—",
        headline_label=f"decisions per review, {len(weeks)} weeks ({_count(len(every), 'session')})",
        tone="" if overall is None else "bad" if overall == 0 else "ok",
        empty="" if every else "No review session was closed in these weeks.",
    )


def self_approved(org: Organization, weeks: list[Week]) -> Metric:
    """Decisions taken by the person they concern because nobody else in the organization could (four eyes),
    by the week they were taken."""
    rows = (
        Decision.objects.for_org(org)
        .filter(self_approved=True, decided_at__gte=weeks[0].start, decided_at__lt=weeks[-1].end)
        .annotate(week=week_index(weeks, "decided_at"))
        .values("week")
        .annotate(n=Count("pk"))
        .order_by()
    )
    values = [0] * len(weeks)
    for row in rows:
        values[row["week"]] = row["n"]
    total = sum(values)
    return Metric(
        key="self_approved",
        column="Self-approved",
        title="Self-approved decisions",
        how="Decisions taken by the KPI's owner, the path's filer or the transfer's requester because nobody else "
        "in the organization could decide (four eyes), by the week they were taken.",
        chart="bar",
        unit="",
        values=values,
        cells=[str(v) for v in values],
        headline=str(total),
        headline_label=f"self-approved decision{'s' if total != 1 else ''} in {len(weeks)} weeks",
        tone="ok" if total == 0 else "bad",
        empty="" if total else "Every decision in these weeks had a second person.",
    )


@dataclass(frozen=True)
class Promise:
    week: int  # index in the period's weeks
    kept: bool
    team: str
    owner: str


def _promises(org: Organization, weeks: list[Week]) -> list[Promise]:
    """The approved mitigation paths whose promised recovery date fell in the period, each with its verdict: kept when
    its KPI was on track again (its episode resolved as recovered) by the end of that day, in the organization's
    calendar. A date still to come counts only once the KPI recovered."""
    tz = org.tzinfo
    first, last = formats.local_day(weeks[0].start, tz), formats.local_day(weeks[-1].end, tz)
    rows = (
        MitigationPath.objects.for_org(org)
        .filter(state=MitigationPath.State.APPROVED, expected_recovery__gte=first, expected_recovery__lte=last)
        .values_list(
            "expected_recovery",
            "workstream__resolution",
            "workstream__resolved_at",
            "workstream__kpi__team__name",
            "workstream__kpi__owner__user__name",
        )
        .order_by()
    )
    starts = [w.start for w in weeks]
    promises = []
    for promised, resolution, resolved, team, owner in rows:
        deadline = formats.midnight(promised + timedelta(days=1), tz)
        kept = resolution == Workstream.Resolution.RECOVERED and resolved is not None and resolved < deadline
        if not kept and deadline > weeks[-1].end:
            continue  # still to come, and not recovered yet: no verdict
        i = bisect.bisect_right(starts, formats.midnight(promised, tz)) - 1
        if 0 <= i < len(weeks):
            promises.append(Promise(i, kept, team, owner))
    return promises


@dataclass(frozen=True)
class PromiseRecord:
    team: str
    owner: str
    kept: int
    promised: int

    @property
    def rate(self) -> int:
        return round(100 * self.kept / self.promised)


def _by_owner(promises: list[Promise]) -> list[PromiseRecord]:
    """Recovery dates kept per team and KPI owner over the period, the worst record first: whose promises hold."""
    tally: dict[tuple[str, str], list[int]] = {}
    for p in promises:
        kept_promised = tally.setdefault((p.team, p.owner), [0, 0])
        kept_promised[0] += p.kept
        kept_promised[1] += 1
    records = [PromiseRecord(team, owner, kept, promised) for (team, owner), (kept, promised) in tally.items()]
    return sorted(records, key=lambda r: (r.rate, -r.promised, r.team, r.owner))


def promised_recovery(org: Organization, weeks: list[Week]) -> Metric:
    """Of the approved mitigation paths whose promised recovery date fell in a week, the share kept (_promises), and
    the same promises per owner (`by_owner`): read once for both."""
    promises = _promises(org, weeks)
    hits, totals = [0] * len(weeks), [0] * len(weeks)
    for p in promises:
        hits[p.week] += p.kept
        totals[p.week] += 1
    values = [round(100 * h / t) if t else None for h, t in zip(hits, totals, strict=True)]
    cells = [f"{v}% ({h}/{t})" if t else "—" for v, h, t in zip(values, hits, totals, strict=True)]
    hit, total = sum(hits), sum(totals)
    rate = round(100 * hit / total) if total else None
    return Metric(
        key="promised_recovery",
        column="Recovery as promised",
        title="Recovery dates kept",
        how="Of the approved mitigation paths whose promised recovery date fell in the week, the share whose KPI was "
        "on track again by the end of that day; in brackets, kept of promised.",
        chart="line",
        unit="%",
        values=values,
        cells=cells,
        headline=f"{rate}%" if rate is not None else "—",
        headline_label=f"of promised recovery dates kept ({hit} of {total})",
        tone="" if rate is None else "ok" if rate >= 80 else "warn" if rate >= 50 else "bad",
        empty="" if total else "No promised recovery date fell in these weeks.",
        by_owner=_by_owner(promises),
    )


# The page's metrics, in order.
METRICS: tuple[Callable[[Organization, list[Week]], Metric], ...] = (
    time_to_approval,
    escalations_per_team,
    stale_share,
    overdue_actions,
    decisions_per_review,
    self_approved,
    promised_recovery,
)


def health_report(*, org: Organization, weeks: int, now: datetime | None = None) -> tuple[list[Week], list[Metric]]:
    """Every metric over the last `weeks` calendar weeks: one query per metric."""
    period = calendar_weeks(org=org, count=weeks, now=now)
    return period, [metric(org, period) for metric in METRICS]
