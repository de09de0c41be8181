"""The evaluation sweep: due KPIs in batches, a constant number of queries per batch, guarded writes.

Two sweeps never evaluate the same KPI at once: each batch is claimed with SELECT ... FOR UPDATE SKIP LOCKED
inside the transaction that writes its results, so a second sweep (another worker, a second beat, a
redelivered task) skips the claimed rows and finds them no longer due once the first commits. A crash rolls
the whole batch back; the redelivered task evaluates it again from the same state. StatusChange rows are
unique per (kpi, changed_at) as a last line of defence.

A sweep of 100,000 KPIs must take seconds (`tests/perf/bench/evaluation.py`), so the batch loop works on plain
tuples read in PostgreSQL's binary format rather than on model instances, builds each distinct rule once per
batch, moves the schedules in the statement that claims the batch, writes the KPIs with one UPDATE per shape of
change, and runs beside a second sweep on its own connection (in the same tenant scope) so that the database's
work overlaps Python's. Writing is what costs most, so the schedule, which every evaluation moves, is a narrow
KpiSchedule row, and the KPI's wide row is written only when its value, reason, status or error moved (in place:
see Kpi).

Where the time goes, per KPI, on one connection (the benchmark's first evaluation of 100,000 KPIs, every KPI's row
written; two shared cores): the database spends about 16 us of CPU, most of it claiming and writing (locking the
KPI's and schedule's rows and moving the schedule, whose index entry moves with it: about 9 us; writing the KPI: 5)
and reading the newest point (3); Python about 8.5 us, of which evaluating 4.5. The bare read of the same rows and
points costs about 12 us (6 and 6). With the second connection the database's work and Python's overlap, so on
free cores a sweep takes little more than its reading; on two cores that PostgreSQL shares it keeps both busy,
which is why a second worker process adds little there (docs/scaling.md).
"""

from __future__ import annotations

import contextvars
import gc
import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, tzinfo
from functools import partial

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from governance.models import Organization
from scorecards.evaluation import evaluator
from scorecards.models import Kpi, KpiSchedule, StatusChange, SurgeSignal
from scorecards.selectors import fetch_series, read_rows

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
MAX_BACKOFF = timedelta(hours=6)
# The Kpi columns a Rule is made of, less its tz (the organization's) and its thresholds, which are read as
# JSON text so that a batch can build one Rule per distinct configuration. That text is an annotation, and
# Django selects annotations after columns: it comes last.
RULE_FIELDS = [f.name for f in fields(evaluator.Rule) if f.init and f.name not in ("thresholds", "tz")]
STATE_FIELDS = list(evaluator.State._fields)
# What an evaluation leaves on the KPI, compared with what the row holds so that an unchanged row is not written.
SHOWN_FIELDS = ["last_value", "last_measured_at", "reason"]
READ_FIELDS = [
    "id",
    "organization_id",
    *RULE_FIELDS,
    *STATE_FIELDS,
    *SHOWN_FIELDS,
    "error",
    "error_count",
    "evaluate_every",
    "schedule__next_evaluation_at",
    "schedule__evaluated_at",
    "schedule__version",
    "thresholds_text",
]
_ID, _ORG, _LAST_MEASURED, _ERROR, _ERRORS, _EVERY, _NEXT, _EVALUATED, _VERSION, _THRESHOLDS = map(
    READ_FIELDS.index,
    ["id", "organization_id", "last_measured_at", "error", "error_count", "evaluate_every"]
    + ["schedule__next_evaluation_at", "schedule__evaluated_at", "schedule__version", "thresholds_text"],
)
_RULE = slice(READ_FIELDS.index(RULE_FIELDS[0]), READ_FIELDS.index(RULE_FIELDS[-1]) + 1)
_STATE = slice(READ_FIELDS.index(STATE_FIELDS[0]), READ_FIELDS.index(STATE_FIELDS[-1]) + 1)
_SHOWN = slice(READ_FIELDS.index(SHOWN_FIELDS[0]), READ_FIELDS.index(SHOWN_FIELDS[-1]) + 1)
# The per-KPI columns ("id" first) written to the KPI when they moved (with its STATE_FIELDS if those moved too),
# to the schedule of every evaluated KPI (whose version goes up by one in the UPDATE itself), and for a failure.
SHOWN_COLUMNS = ["id", *SHOWN_FIELDS]
SCHEDULE_COLUMNS = ["id", "next_evaluation_at"]
RETRY_COLUMNS = ["id", "next_evaluation_at", "evaluated_at", "version"]
FAILED_COLUMNS = ["id", "error", "error_count"]


@dataclass
class SweepResult:
    evaluated: int = 0
    changed: int = 0
    surges: int = 0
    errors: int = 0

    def __iadd__(self, other: SweepResult) -> SweepResult:
        self.evaluated += other.evaluated
        self.changed += other.changed
        self.surges += other.surges
        self.errors += other.errors
        return self


def next_tick(previous: datetime | None, every: timedelta, now: datetime) -> datetime:
    """The next point of the KPI's evaluate_every grid after `now` (UTC): missed ticks are not replayed."""
    if previous is None or every <= timedelta(0):
        return now + max(every, timedelta(minutes=1))
    if previous > now:
        return previous
    return previous + ((now - previous) // every + 1) * every


def rule_for(kpi: Kpi, tz: tzinfo | None = None) -> evaluator.Rule:
    return evaluator.Rule(
        **{name: getattr(kpi, name) for name in RULE_FIELDS},
        thresholds=kpi.thresholds,
        tz=tz or kpi.organization.tzinfo,
    )


def state_of(kpi: Kpi) -> evaluator.State:
    return evaluator.State(*(getattr(kpi, name) for name in STATE_FIELDS))


def read_batch(
    kpis: QuerySet[Kpi], now: datetime, *, claim: bool = False
) -> tuple[list[tuple], list[evaluator.Rule], dict[int, list]]:
    """What a sweep reads for a batch: the KPIs' rows (READ_FIELDS), each one's rule, and their recent points.
    With `claim` (a sweep's batch, `kpis` selected for update) on PostgreSQL, the statement that locks the rows
    also moves their schedules (see _claim).

    The benchmark's bare-fetch yardstick calls this too, so that it always reads what the sweep reads.
    """
    values = kpis.annotate(thresholds_text=Cast("thresholds", TextField())).values_list(*READ_FIELDS)
    rows = _claim(values, now) if claim and connection.vendor == "postgresql" else read_rows(values)
    if not rows:
        return [], [], {}
    zones = {org.pk: org.tzinfo for org in Organization.objects.filter(pk__in={row[_ORG] for row in rows})}
    # KPIs often share a configuration (the benchmark's all do): one Rule and one JSON parse for each.
    built: dict[tuple, tuple[evaluator.Rule, bool]] = {}
    rules, groups = [], {True: [], False: []}
    for row in rows:
        key = (row[_ORG], row[_THRESHOLDS], *row[_RULE])
        if key not in built:
            config = dict(zip(RULE_FIELDS, row[_RULE], strict=True))
            rule = evaluator.Rule(**config, thresholds=json.loads(row[_THRESHOLDS]), tz=zones[row[_ORG]])
            built[key] = rule, evaluator.newest_only(rule)
        rule, newest = built[key]
        rules.append(rule)
        groups[newest].append(row[_ID])
    # Two reads, each for the KPIs that need it: only the newest point (most KPIs), or the whole series.
    series: dict[int, list] = {}
    for newest, ids in groups.items():
        if ids:
            since = now - max(evaluator.lookback(rule) for rule, shape in built.values() if shape is newest)
            series |= fetch_series(ids, since, now, newest_only=newest)
    return rows, rules, series


def _claim(values: QuerySet, now: datetime) -> list[tuple]:
    """The rows of `values` (locked FOR UPDATE SKIP LOCKED), whose schedules the same statement moves to their next
    tick (next_tick's rule, in SQL) as evaluated at `now`: no next tick per KPI to compute and send from Python, and
    one round trip. A failed evaluation later puts its retry in (_BatchWrites.failure)."""
    sql, params = values.query.sql_with_params()
    names = [f"c{i}" for i in range(len(READ_FIELDS))]
    previous, every = f"c.{names[_NEXT]}", f"extract(epoch FROM c.{names[_EVERY]})"
    # In seconds rather than intervals: an interval's days would follow the session's time zone.
    tick = (
        f"CASE WHEN {previous} IS NULL OR {every} <= 0 THEN %s + GREATEST({every}, 60) * interval '1 second' "
        f"WHEN {previous} > %s THEN {previous} "
        f"ELSE {previous} + (div(extract(epoch FROM %s - {previous}), {every}) + 1) * {every} * interval '1 second' END"
    )
    schedule = connection.ops.quote_name(KpiSchedule._meta.db_table)
    statement = (
        f"UPDATE {schedule} AS s SET next_evaluation_at = {tick}, evaluated_at = %s, needs_evaluation = false, "
        f"version = s.version + 1 FROM ({sql}) AS c ({', '.join(names)}) WHERE s.kpi_id = c.{names[_ID]} "
        "RETURNING c.*"
    )
    with connection.psycopg_cursor() as cursor:
        return cursor.execute(statement, [now, now, now, now, *params], binary=True).fetchall()


def _due(due: Q, org_id: int | None, now: datetime) -> QuerySet[Kpi]:
    """The KPIs due, with their schedules: `due` is a condition on the KpiSchedule (`schedule__...`)."""
    # Never behind a later evaluation: a sweep that started earlier (a slow one, or a redelivered task) would
    # judge the KPI as of a moment before data that a newer sweep has already seen.
    not_judged_later = Q(schedule__evaluated_at__isnull=True) | Q(schedule__evaluated_at__lte=now)
    qs = Kpi.objects.filter(archived_at=None).filter(due, not_judged_later)
    return qs.filter(organization_id=org_id) if org_id else qs


def evaluate_batch(
    *,
    now: datetime,
    due: Q,
    order: str,
    org_id: int | None = None,
    batch_size: int = BATCH_SIZE,
    on_full_batch: Callable[[], None] = lambda: None,
) -> SweepResult:
    with transaction.atomic(), _probing_keys():
        # Ordered by the schedule's index that finds due rows, so each batch starts at the first row still due.
        # Without it the model's default ordering (name) sorted every due row for each batch. The claim locks the
        # KPI's row as well as its schedule's, as ingestion and the KPI's editors do: they wait for the batch, and
        # the sweep skips what they hold (SKIP LOCKED on both), so none ever waits for the other in a cycle.
        claimed = _due(due, org_id, now).order_by(order).select_for_update(skip_locked=True)[:batch_size]
        rows, rules, series = read_batch(claimed, now, claim=True)
        if len(rows) == batch_size:
            on_full_batch()  # there may be more: see evaluate_due
        writes = _BatchWrites(scheduled=connection.vendor == "postgresql")
        for row, rule in zip(rows, rules, strict=True):
            points = series[row[_ID]]
            newest = row[_LAST_MEASURED]
            if points and (newest is None or points[-1][0] > newest):
                newest = points[-1][0]
            try:
                decision = evaluator.evaluate(rule, evaluator.State(*row[_STATE]), points, newest, now)
            except Exception as error:  # one KPI's bad configuration must not stop the others
                log.exception("evaluation of KPI %s failed", row[_ID])
                writes.failure(row, error, now)
                continue
            writes.decision(row, decision, newest, now)
        writes.save(now)
    return SweepResult(len(rows) - len(writes.failed), len(writes.changes), len(writes.surges), len(writes.failed))


@dataclass
class _BatchWrites:
    """A batch's rows to write, by what changed: every evaluation moves the schedule (unless the claim `scheduled`
    them already); the KPI's row is written only when what it shows moved (value, reason), its status/pending
    columns only for the KPIs whose state moved."""

    scheduled: bool = False
    ticks: list[tuple] = field(default_factory=list)
    shown: list[tuple] = field(default_factory=list)
    new_state: list[tuple] = field(default_factory=list)
    failed: list[tuple] = field(default_factory=list)
    retries: list[tuple] = field(default_factory=list)
    changes: list[StatusChange] = field(default_factory=list)
    surges: list[SurgeSignal] = field(default_factory=list)

    def failure(self, row: tuple, error: Exception, now: datetime) -> None:
        errors = row[_ERRORS] + 1
        # Retry at the KPI's own pace first, then ever more slowly: a broken KPI must not flood the log.
        retry = now + min(row[_EVERY] * 2 ** (errors - 1), MAX_BACKOFF)
        self.failed.append((row[_ID], f"{type(error).__name__}: {error}"[:2000], errors))
        # Not an evaluation: the schedule keeps its last one (which the claim may have moved).
        self.retries.append((row[_ID], retry, row[_EVALUATED], row[_VERSION]))

    def decision(self, row: tuple, decision: evaluator.Decision, newest: datetime | None, now: datetime) -> None:
        kpi_id, kpi_org = row[_ID], row[_ORG]
        if decision.changed:
            self.changes.append(
                StatusChange(
                    organization_id=kpi_org,
                    kpi_id=kpi_id,
                    old=decision.old_status,
                    new=decision.status,
                    value=decision.value,
                    thresholds=decision.thresholds,
                    reason=decision.reason,
                    changed_at=now,
                )
            )
        if decision.surge is not None:
            self.surges.append(
                SurgeSignal(
                    organization_id=kpi_org,
                    kpi_id=kpi_id,
                    at=now,
                    previous=decision.surge.previous,
                    current=decision.surge.current,
                    change=decision.surge.change,
                )
            )
        if not self.scheduled:
            self.ticks.append((kpi_id, next_tick(row[_NEXT], row[_EVERY], now)))
        after = (
            decision.status,
            decision.status_since,
            decision.pending_status,
            decision.pending_since,
            decision.last_surge_at,
        )
        values = (decision.value, newest, decision.reason)
        if after != row[_STATE]:
            self.new_state.append((kpi_id, *values, *after))
        elif values != row[_SHOWN] or row[_ERRORS] or row[_ERROR]:
            self.shown.append((kpi_id, *values))

    def save(self, now: datetime) -> None:
        cleared = dict(error="", error_count=0)  # an evaluation that succeeds ends a run of errors
        _update(Kpi, SHOWN_COLUMNS, self.shown, **cleared)
        _update(Kpi, [*SHOWN_COLUMNS, *STATE_FIELDS], self.new_state, **cleared)
        _update(Kpi, FAILED_COLUMNS, self.failed)
        _update(KpiSchedule, SCHEDULE_COLUMNS, self.ticks, versioned=True, evaluated_at=now, needs_evaluation=False)
        _update(KpiSchedule, RETRY_COLUMNS, self.retries, needs_evaluation=False)
        StatusChange.objects.bulk_create(self.changes)
        SurgeSignal.objects.bulk_create(self.surges)


def _update(
    model: type[Kpi | KpiSchedule], columns: list[str], rows: list[tuple], *, versioned: bool = False, **same: object
) -> None:
    """One UPDATE of `model` for a batch: `rows` hold the per-KPI values of `columns` ("id", the KPI's, first);
    `same` is for all; `versioned` also counts one more version for each row."""
    if not rows:
        return
    pk = model._meta.pk
    if connection.vendor != "postgresql":
        # SQLite (the local default) holds few KPIs; Django's bulk_update adapts its values correctly there.
        version = {"version": F("version") + 1} if versioned else {}
        objs = [model(**{pk.attname: row[0]}, **dict(zip(columns[1:], row[1:], strict=True)), **same) for row in rows]
        model.objects.bulk_update(objs, [*columns[1:], *same, *version])
        return
    # bulk_update's CASE expressions cost ~5 ms per KPI; unnest() joins a batch's arrays in one statement.
    table = connection.ops.quote_name(model._meta.db_table)
    types = [(pk if name == "id" else model._meta.get_field(name)).db_type(connection) for name in columns]
    arrays = ", ".join(f"%b::{db_type}[]" for db_type in types)
    assignments = [f"{name} = %s" for name in same] + [f"{name} = v.{name}" for name in columns[1:]]
    if versioned:
        assignments.append("version = t.version + 1")
    with connection.psycopg_cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET {', '.join(assignments)} FROM unnest({arrays}) AS v({', '.join(columns)}) "
            f"WHERE t.{pk.column} = v.id",
            [*same.values(), *(list(column) for column in zip(*rows, strict=True))],
        )


@contextmanager
def _probing_keys() -> Iterator[None]:
    """A batch's statements join its few thousand rows to tables of many: with random_page_cost's spinning disks the
    planner would rather hash or sort a whole table than probe its primary key once per row, and a batch would read
    every KPI."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.psycopg_cursor() as cursor:
        cursor.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
    yield
    with connection.psycopg_cursor() as cursor:  # the caller's transaction may go on
        cursor.execute("SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT")


def evaluate_due(
    *, now: datetime | None = None, org_id: int | None = None, batch_size: int = BATCH_SIZE
) -> SweepResult:
    """Evaluates every due KPI, batch after batch, until none is left (or only rows another sweep holds)."""
    sweep = partial(_sweep, now=now or timezone.now(), org_id=org_id, batch_size=batch_size)
    with _without_cycle_collection():
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return sweep()  # on the caller's one connection, inside its transaction
        return _overlapped(sweep)


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """A batch makes tens of thousands of tuples that live until it ends, and no reference cycles: their number set
    off full passes of Python's cycle collector over the worker's whole heap, a third of the sweep's Python time. A
    cycle another thread makes meanwhile waits for the collector's first pass after the sweep."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:  # a sweep that started inside another one's (another thread's) leaves it to that one
            gc.enable()


def _overlapped(sweep: Callable[..., SweepResult]) -> SweepResult:
    # Once a batch comes back full, a second sweep joins on a connection of its own: while one evaluates in
    # Python, the database reads or writes the other's batch, so a sweep takes about the longer of the two
    # rather than their sum. They split the work as any two sweeps do (SKIP LOCKED).
    with ThreadPoolExecutor(max_workers=1) as pool:
        helpers: list[Future[SweepResult]] = []

        def join() -> None:
            if not helpers:
                # In the caller's context, which holds its tenant scope: a thread starts with none, and without
                # one row-level security shows the helper nothing to claim.
                helpers.append(pool.submit(contextvars.copy_context().run, _on_own_connection, sweep))

        total = sweep(on_full_batch=join)
        for helper in helpers:
            total += helper.result()
    return total


def _sweep(
    *, now: datetime, org_id: int | None, batch_size: int, on_full_batch: Callable[[], None] = lambda: None
) -> SweepResult:
    total = SweepResult()
    # The two ways to be due are claimed one after the other, each through its own partial index: an OR of
    # both scans the table once per batch, which makes a sweep of N KPIs read N^2 / batch_size rows.
    due_now = Q(schedule__next_evaluation_at__lte=now)
    for due, order in ((Q(schedule__needs_evaluation=True), "schedule"), (due_now, "schedule__next_evaluation_at")):
        while True:
            batch = evaluate_batch(
                now=now, due=due, order=order, org_id=org_id, batch_size=batch_size, on_full_batch=on_full_batch
            )
            if not (batch.evaluated or batch.errors):
                break
            total += batch
    return total


def _on_own_connection(sweep: Callable[[], SweepResult]) -> SweepResult:
    try:
        return sweep()
    finally:
        connection.close()  # Django opened it for this thread and would otherwise leave it open
