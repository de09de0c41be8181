"""Reads shared by views, commands and tasks; every one takes the organization."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, connections, router
from django.db.models import Case, CharField, Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from governance.models import Membership, Organization
from scorecards.models import (
    EPOCH,
    STATUS_SEVERITY,
    KeyResult,
    Kpi,
    Measurement,
    Objective,
    Scorecard,
    Status,
)

SORTS = {
    "name": ("name",),
    "team": ("team__name", "name"),
    "owner": ("owner__user__name", "name"),
    "status": ("severity", "name"),
    "age": ("last_measured_at", "name"),
}


@dataclass(frozen=True)
class KpiFilters:
    team_id: int | None = None
    status: str = ""
    objective_id: int | None = None
    text: str = ""
    sort: str = "status"
    descending: bool = False


def kpi_list(
    *,
    org: Organization,
    viewer: Membership | None,
    filters: KpiFilters = KpiFilters(),
    scorecard: Scorecard | None = None,
) -> QuerySet[Kpi]:
    """The organization's live KPIs as `viewer` may see them (visible_kpis); None for an organization's own
    reader (an organization token, a task), which sees them all."""
    severity = Case(
        *(When(status=s, then=Value(i)) for i, s in enumerate(STATUS_SEVERITY)), output_field=IntegerField()
    )
    qs = (
        Kpi.objects.for_org(org)
        .filter(archived_at=None)
        .select_related("team", "owner__user")
        .annotate(severity=severity)
    )
    qs = visible_kpis(qs, viewer)
    if scorecard is not None:
        qs = qs.filter(Q(scorecards=scorecard) | Q(team__in=scorecard.teams.all())).distinct()
    if filters.team_id:
        qs = qs.filter(team_id=filters.team_id)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.objective_id:
        qs = qs.filter(key_results__objective_id=filters.objective_id).distinct()
    if filters.text:
        qs = qs.filter(Q(name__icontains=filters.text) | Q(key__icontains=filters.text))
    order = SORTS.get(filters.sort, SORTS["status"])
    return qs.order_by(*(f"-{f}" if filters.descending else f for f in order))


# The scorecard's workstream chip: what the open episode's mitigation stands at, worst news first.
WORKSTREAM_STATES = {
    "overdue": "Actions overdue",
    "none": "No path yet",
    "rejected": "Path rejected",
    "submitted": "Path awaiting review",
    "approved": "Path approved",
}


SCORECARD_COLUMNS = ["Key", "KPI", "Team", "Owner", "Status", "Value", "Unit", "Target", "Last measured", "Reason"]


def scorecard_table(kpis: QuerySet[Kpi]) -> list[list[object]]:
    """A scorecard's rows for an export (governance.exports), in SCORECARD_COLUMNS order: values keep their type."""
    return [
        [
            k.key,
            k.name,
            k.team.name,
            k.owner.user.name,
            k.get_status_display(),
            k.last_value,
            k.unit,
            k.target_value,
            k.last_measured_at,
            k.reason,
        ]
        for k in kpis
    ]


def with_workstream_state(kpis: QuerySet[Kpi]) -> QuerySet[Kpi]:
    """Annotates each KPI with its open workstream (`open_workstream_id`) and that episode's state for the chip
    (`workstream_state`, a WORKSTREAM_STATES key, None without an open episode), as subqueries of the same query.
    Escalations sits above scorecards, so its models are reached through the reverse relations, not imported."""
    workstream = Kpi.workstreams.field.model
    path = workstream.paths.field.model
    action = path.actions.field.model
    episode = {"workstream__kpi": OuterRef("pk"), "workstream__resolved_at": None}
    latest = path._default_manager.filter(**episode).order_by("-filed_at", "-id").values("state")[:1]
    overdue = action._default_manager.filter(
        path__workstream__kpi=OuterRef("pk"),
        path__workstream__resolved_at=None,
        path__state=path.State.APPROVED,
        done_at=None,
        overdue_at__isnull=False,
    )
    open_id = Subquery(workstream._default_manager.filter(kpi=OuterRef("pk"), resolved_at=None).values("pk")[:1])
    state = Case(
        When(open_workstream_id=None, then=Value(None)),
        When(Exists(overdue), then=Value("overdue")),
        default=Coalesce(Subquery(latest), Value("none")),
        output_field=CharField(),
    )
    return kpis.annotate(open_workstream_id=open_id).annotate(workstream_state=state)


def status_counts(kpis: QuerySet[Kpi]) -> dict[str, int]:
    counts = dict.fromkeys(Status.values, 0)
    for row in kpis.order_by().values("status").annotate(n=Count("id", distinct=True)):
        counts[row["status"]] = row["n"]
    return counts


def read_rows(values: QuerySet) -> list[tuple]:
    """The rows of a values_list() queryset, on PostgreSQL through psycopg's binary protocol on the queryset's
    database: times, intervals and numbers are decoded in C, where Django's text protocol parses each one in Python
    (a scorecard's rows and the sweep's batches are bound by reading them)."""
    database = connections[values.db]
    if database.vendor != "postgresql":
        return list(values)
    compiler = values.query.get_compiler(values.db)
    # The parameters bound into the text, as Django's own cursor does: the ORDER BY of a SELECT DISTINCT must
    # repeat a selected expression word for word, which two server-side parameters ($1, $2) never do.
    statement = database.bind(*compiler.as_sql())
    with database.psycopg_cursor() as cursor:
        rows = cursor.execute(statement, binary=True).fetchall()
    # A SELECT DISTINCT also selects its ORDER BY expressions, after the columns asked for: Django drops them.
    return [row[: compiler.col_count] for row in rows] if compiler.has_extra_select else rows


def fetch_series(
    ids: list[int], since: datetime, now: datetime, *, newest_only: bool = False
) -> dict[int, list[tuple[datetime, float]]]:
    """The points in (since, now] of every KPI in `ids`, in one query (sparklines, charts, the evaluation sweep);
    with `newest_only`, just each KPI's newest point in that range."""
    series: dict[int, list] = {kpi_id: [] for kpi_id in ids}
    if connection.vendor == "postgresql":
        table = Measurement._meta.db_table
        # What Measurement.objects reads (MeasurementManager), in this query's SQL.
        readable, bound = "value BETWEEN %s AND %s", settings.MEASUREMENT_MAX_ABS
        # psycopg's own cursor with binary results: times arrive as datetimes decoded in C, where Django's text
        # protocol parses each one in Python (the sweep and the scorecard are bound by reading, see `make bench`).
        # Where Measurement.objects would read: a page's replica (config/replica.py), else the primary.
        with connections[router.db_for_read(Measurement)].psycopg_cursor() as cursor:
            if newest_only:
                # One backward probe of the (kpi, at) index per KPI, instead of reading its whole range.
                cursor.execute(
                    f"SELECT k.id, m.at, m.value FROM unnest(%b::bigint[]) AS k(id) CROSS JOIN LATERAL ("
                    f"SELECT at, value FROM {table} WHERE kpi_id = k.id AND at > %s AND at <= %s AND {readable} "
                    "ORDER BY at DESC LIMIT 1) AS m",
                    [ids, max(since, EPOCH), now, -bound, bound],
                    binary=True,
                )
                for kpi_id, at, value in cursor.fetchall():
                    series[kpi_id] = [(at, value)]
            else:
                # One row per KPI with its points as two arrays: far less to decode than a row per point.
                cursor.execute(
                    "SELECT kpi_id, array_agg(at ORDER BY at), array_agg(value ORDER BY at) "
                    f"FROM {table} WHERE kpi_id = ANY(%b::bigint[]) AND at > %s AND at <= %s AND {readable} "
                    "GROUP BY kpi_id",
                    [ids, max(since, EPOCH), now, -bound, bound],
                    binary=True,
                )
                for kpi_id, times, values in cursor.fetchall():
                    series[kpi_id] = list(zip(times, values, strict=True))
        return series
    rows = Measurement.objects.filter(kpi_id__in=ids, at__gt=since, at__lte=now).order_by("kpi_id", "at")
    for kpi_id, at, value in rows.values_list("kpi_id", "at", "value"):
        if newest_only:
            series[kpi_id] = [(at, value)]
        else:
            series[kpi_id].append((at, value))
    return series


def trend(points: list[tuple[datetime, float]]) -> str:
    """up, down or flat: the latest value against the one a week before it (2% dead band)."""
    if len(points) < 2:
        return "flat"
    last_at, last = points[-1]
    earlier = [v for at, v in points if at <= last_at - timedelta(days=7)] or [points[0][1]]
    base = earlier[-1]
    if base == 0:
        return "flat" if last == 0 else ("up" if last > 0 else "down")
    change = (last - base) / abs(base)
    return "up" if change > 0.02 else "down" if change < -0.02 else "flat"


def can_configure_kpi(membership: Membership, kpi: Kpi) -> bool:
    # Admins and the owner by role; anyone else only with guardian's object permission on this KPI.
    return (
        membership.is_admin
        or kpi.owner_id == membership.pk
        or membership.user.has_perm("scorecards.configure_kpi", kpi)
    )


def scorecards_for(*, membership: Membership) -> list[Scorecard]:
    team_keys = set(membership.teams.values_list("key", flat=True))
    return [
        s
        for s in Scorecard.objects.for_org(membership.organization).filter(archived_at=None)
        if scorecard_visible(s, membership, team_keys)
    ]


def visible_kpis(kpis: QuerySet[Kpi], viewer: Membership | None) -> QuerySet[Kpi]:
    """The KPIs of `kpis` that `viewer` may see: the one rule for every page, export, digest and API listing.

    Scorecard viewers restrict their KPIs (and their teams' KPIs): a KPI that is on a scorecard the viewer may not
    see is hidden, unless it is also on one they may see (an open one counts) or they own it. A KPI on no
    restricted scorecard is everyone's. Admins and executives see every scorecard, so every KPI."""
    if viewer is None or viewer.role in ("admin", "executive"):
        return kpis
    # Read once per membership object, that is once per request: a page may list KPIs several times.
    if not hasattr(viewer, "_scorecards_seen"):
        cards = list(Scorecard.objects.for_org(viewer.organization).filter(archived_at=None))
        team_keys = set(viewer.teams.values_list("key", flat=True)) if any(c.viewers for c in cards) else set()
        shown = [c.pk for c in cards if scorecard_visible(c, viewer, team_keys)]
        viewer._scorecards_seen = shown, [c.pk for c in cards if c.pk not in shown]
    shown, hidden = viewer._scorecards_seen
    if not hidden:
        return kpis
    return kpis.filter(Q(owner=viewer) | ~_on_scorecards(hidden) | _on_scorecards(shown))


def _on_scorecards(ids: list[int]) -> Q:
    listed = Scorecard.kpis.through.objects.filter(scorecard_id__in=ids).values("kpi_id")
    teams = Scorecard.teams.through.objects.filter(scorecard_id__in=ids).values("team_id")
    return Q(pk__in=listed) | Q(team_id__in=teams)


def scorecard_visible(scorecard: Scorecard, membership: Membership, team_keys: set[str] | None = None) -> bool:
    """Admins and executives see every scorecard; others see those whose viewers name them (empty: all)."""
    if membership.role in ("admin", "executive") or not scorecard.viewers:
        return True
    if team_keys is None:
        team_keys = set(membership.teams.values_list("key", flat=True))
    for viewer in scorecard.viewers:
        kind, _, value = viewer.partition(":")
        if (
            (kind == "role" and value == membership.role)
            or (kind == "team" and value in team_keys)
            or (kind == "user" and value.lower() == membership.user.email.lower())
        ):
            return True
    return False


@dataclass
class ObjectiveNode:
    objective: Objective
    key_results: list[KeyResult]
    children: list[ObjectiveNode] = field(default_factory=list)

    @property
    def progress(self) -> float | None:
        """Average progress of its key results (not capped), or None without any measurable one."""
        values = [p for kr in self.key_results if (p := key_result_progress(kr)) is not None]
        return sum(values) / len(values) if values else None

    @property
    def status(self) -> str:
        """The weakest status among its key results."""
        present = {key_result_status(kr) for kr in self.key_results}
        return next((s for s in STATUS_SEVERITY if s in present), Status.NO_DATA)


def key_result_actual(kr: KeyResult) -> float | None:
    return kr.kpi.last_value if kr.kpi_id else kr.current


def key_result_progress(kr: KeyResult) -> float | None:
    actual = key_result_actual(kr)
    if actual is None or kr.target == kr.start:
        return None
    return (actual - kr.start) / (kr.target - kr.start)


def key_result_status(kr: KeyResult) -> str:
    """A linked key result takes its KPI's status; a checked-in one is judged by progress against the period."""
    if kr.kpi_id:
        return kr.kpi.status
    progress = key_result_progress(kr)
    if progress is None:
        return Status.NO_DATA
    period = kr.objective
    span = (period.period_end - period.period_start).days or 1
    elapsed = min(max((timezone.localdate() - period.period_start).days / span, 0), 1)
    if progress >= elapsed * 0.9:
        return Status.ON_TRACK
    return Status.AT_RISK if progress >= elapsed * 0.7 else Status.OFF_TRACK


def objective_tree(*, org: Organization, on: date | None = None) -> list[ObjectiveNode]:
    """Objectives whose period contains `on` (default: all), as a forest, in three queries."""
    objectives = Objective.objects.for_org(org).filter(archived_at=None).select_related("owner__user", "team")
    if on:
        objectives = objectives.filter(period_start__lte=on, period_end__gte=on)
    krs = defaultdict(list)
    for kr in (
        KeyResult.objects.for_org(org)
        .filter(archived_at=None, objective__in=objectives)
        .select_related("kpi", "owner__user", "objective")
    ):
        krs[kr.objective_id].append(kr)
    nodes = {o.pk: ObjectiveNode(o, krs[o.pk]) for o in objectives}
    roots = []
    for node in nodes.values():
        parent = nodes.get(node.objective.parent_id)
        (parent.children if parent else roots).append(node)
    return roots
