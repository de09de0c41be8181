"""Calculated KPIs in the graph: a formula's inputs are "computed from" edges, and new input data recomputes the
KPIs computed from it, in topological order (docs/manifest.md, "Formulas"; the formula itself is
scorecards.formulas). Here rather than in scorecards because the edges are the graph's.

A "computed from" edge runs from the calculated KPI (upstream) to each of its inputs (downstream), so that the
arrow reads "margin computed from revenue" and a breach of the calculated KPI reaches the inputs' owners as a
dependency review, as any upstream breach does (SEMANTICS.md 4). Recomputation follows the edges the other way.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import OuterRef, Subquery

from dependencies.models import Dependency
from governance.models import Organization, User
from governance.services.audit import audit_log
from scorecards import formulas
from scorecards.evaluation.aggregate import aggregate
from scorecards.ingestion.store import FORMULA, measurements_store
from scorecards.models import Kpi, Measurement

COMPUTED_FROM = Dependency.Kind.COMPUTED_FROM


def formula_keys(text: str) -> set[str]:
    """The KPI keys a stored (already validated) formula reads."""
    return formulas.parsed(text).keys


@transaction.atomic
def formula_edges_sync(*, org: Organization, actor: User | None) -> tuple[int, int]:
    """Makes the "computed from" edges match the live KPIs' formulas; returns (created, deleted).

    A pair that already has a declared edge keeps it (it already carries the breach to the input's owner)."""
    ids = dict(Kpi.objects.for_org(org).filter(archived_at=None).values_list("key", "pk"))
    calculated = Kpi.objects.for_org(org).filter(archived_at=None).exclude(formula="").values_list("pk", "formula")
    desired = {(pk, ids[key]) for pk, text in calculated for key in formula_keys(text) if key in ids}
    edges = Dependency.objects.for_org(org).values_list("pk", "upstream_id", "downstream_id", "kind")
    computed = {(up, down): pk for pk, up, down, kind in edges if kind == COMPUTED_FROM}
    declared = {(up, down) for _, up, down, kind in edges if kind != COMPUTED_FROM}
    created = Dependency.objects.bulk_create(
        Dependency(organization=org, upstream_id=up, downstream_id=down, kind=COMPUTED_FROM)
        for up, down in sorted(desired - declared - computed.keys())
    )
    gone = [pk for pair, pk in computed.items() if pair not in desired]
    Dependency.objects.filter(pk__in=gone).delete()
    if created or gone:
        keys = {pk: key for key, pk in ids.items()}
        audit_log(
            org=org,
            actor=actor,
            verb="dependency.formula_edges",
            obj=org,
            after={
                "created": [f"{keys[e.upstream_id]} -> {keys[e.downstream_id]}" for e in created],
                "deleted": len(gone),
            },
        )
    return len(created), len(gone)


@dataclass
class RecomputeResult:
    computed: int = 0  # calculated KPIs that got a value
    no_value: int = 0  # calculated KPIs with a reason instead
    reasons: dict[str, str] = field(default_factory=dict)  # key -> reason, for the ones without a value


def formulas_recompute(*, org: Organization, kpi_ids: list[int]) -> RecomputeResult:
    """Recomputes every KPI calculated from `kpi_ids` (directly or through other formulas), once each and
    inputs first, and stores their values in one write (which queues their evaluation as any data does).

    A calculated value stands at the newest moment all its inputs have data: the oldest of its inputs' newest
    measurements. So a stale input makes the calculated KPI stale too, and no value mixes two moments' data."""
    result = RecomputeResult()
    # (input, calculated KPI) pairs: each computed-from edge read from its downstream end.
    feeds = list(Dependency.objects.for_org(org).filter(kind=COMPUTED_FROM).values_list("downstream_id", "upstream_id"))
    order = _fed_in_order(feeds, set(kpi_ids))
    if not order:
        return result
    inputs_of: dict[int, set[int]] = defaultdict(set)
    for up, down in feeds:
        inputs_of[down].add(up)
    inputs = {up for pk in order for up in inputs_of[pk]}
    wanted = set(order) | inputs
    kpis = {k.pk: k for k in Kpi.objects.filter(organization=org, pk__in=wanted).only(*_FIELDS)}
    ids = {k.key: k.pk for k in kpis.values()}
    parsed = {kpis[pk].formula: formulas.parsed(kpis[pk].formula) for pk in order if pk in kpis and kpis[pk].formula}
    window = max((t.window for f in parsed.values() for t in f.terms.values() if t.window), default=timedelta(0))
    newest = {pk: k.last_measured_at for pk, k in kpis.items()}
    series = _series(org, sorted(inputs), newest, window)

    rows, reasons = [], {}
    # (term, moment) -> value: KPIs reading the same input at the same moment share one aggregation. A calculated
    # KPI's own value enters `series` before any KPI computed from it reads it (they come later in `order`).
    values: dict[tuple, float | None] = {}
    for pk in order:
        kpi = kpis.get(pk)
        if kpi is None or not kpi.formula or kpi.archived_at is not None:
            continue
        formula = parsed[kpi.formula]
        missing = sorted(key for key in formula.keys if newest.get(ids.get(key)) is None)
        if missing:
            reasons[pk] = f"no data for {missing[0]}"
            continue
        at = min(newest[ids[key]] for key in formula.keys)

        def value_of(term: formulas.Term, at: datetime = at) -> float | None:
            cache_key = (term, at)
            if cache_key not in values:
                values[cache_key] = aggregate(series[ids[term.key]], term.fn, term.window, at)
            return values[cache_key]

        try:
            value = formula.evaluate(value_of)
        except formulas.NoValue as e:
            reasons[pk] = str(e)
            continue
        reasons[pk] = ""
        rows.append((pk, at, value))
        if pk in inputs:  # another formula of this run reads it
            _put(series[pk], at, value)
        newest[pk] = max(filter(None, [newest[pk], at]))
    with transaction.atomic():
        measurements_store(org=org, rows=rows, source=FORMULA)
        changed = [kpis[pk] for pk, reason in reasons.items() if kpis[pk].formula_reason != reason]
        for kpi in changed:
            kpi.formula_reason = reasons[kpi.pk]
        Kpi.objects.bulk_update(changed, ["formula_reason"], batch_size=1000)
    result.computed = len(rows)
    result.reasons = {kpis[pk].key: reason for pk, reason in reasons.items() if reason}
    result.no_value = len(result.reasons)
    return result


_FIELDS = ("pk", "key", "formula", "formula_reason", "last_measured_at", "archived_at")


def _fed_in_order(edges: list[tuple[int, int]], changed: set[int]) -> list[int]:
    """The KPIs computed (directly or through other calculated KPIs) from `changed`, each after its inputs;
    `edges` are (input, calculated KPI) pairs."""
    downstream: dict[int, list[int]] = defaultdict(list)
    for up, down in edges:
        downstream[up].append(down)
    reached, queue = set(), deque(changed)
    while queue:
        for down in downstream[queue.popleft()]:
            if down not in reached:
                reached.add(down)
                queue.append(down)
    # Kahn's algorithm over the reached part (the graph is acyclic, dependencies.services sees to it).
    waiting = {pk: 0 for pk in reached}
    for up, down in edges:
        if up in reached and down in reached:
            waiting[down] += 1
    ready = deque(sorted(pk for pk, n in waiting.items() if n == 0))
    order = []
    while ready:
        pk = ready.popleft()
        order.append(pk)
        for down in downstream[pk]:
            if down in waiting:
                waiting[down] -= 1
                if waiting[down] == 0:
                    ready.append(down)
    return order


def _series(
    org: Organization, kpi_ids: list[int], newest: dict[int, datetime | None], window: timedelta
) -> dict[int, list[tuple[datetime, float]]]:
    """Each KPI's points that any formula may read, oldest first, in two queries: everything inside the widest
    window before the oldest input's newest point, and the one point just before that (a plain last value)."""
    series: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    known = [newest[pk] for pk in kpi_ids if newest.get(pk)]
    if not known:
        return series
    since = min(known) - window
    before = (
        Kpi.objects.filter(organization=org, pk__in=kpi_ids)
        .annotate(
            at=Subquery(Measurement.objects.filter(kpi=OuterRef("pk"), at__lte=since).order_by("-at").values("at")[:1]),
            value=Subquery(
                Measurement.objects.filter(kpi=OuterRef("pk"), at__lte=since).order_by("-at").values("value")[:1]
            ),
        )
        .values_list("pk", "at", "value")
    )
    for pk, at, value in before:
        if at is not None:
            series[pk].append((at, value))
    points = Measurement.objects.filter(organization=org, kpi_id__in=kpi_ids, at__gt=since).order_by("kpi_id", "at")
    for pk, at, value in points.values_list("kpi_id", "at", "value"):
        series[pk].append((at, value))
    return series


def _put(points: list[tuple[datetime, float]], at: datetime, value: float) -> None:
    """A computed point into a series, replacing the one at the same time."""
    points[:] = sorted({**dict(points), at: value}.items())
