"""The evaluation sweep: due KPIs in batches, a constant number of queries per batch, guarded writes.

Two sweeps never evaluate the same KPI at once: each batch is claimed with SELECT ... FOR UPDATE SKIP LOCKED
inside the transaction that writes its results, so a second sweep (another worker, a second beat, a
redelivered task) skips the claimed rows and finds them no longer due once the first commits. A crash rolls
the whole batch back; the redelivered task evaluates it again from the same state. StatusChange rows are
unique per (kpi, changed_at) as a last line of defence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from governance.models import Organization
from scorecards import evaluator
from scorecards.models import Kpi, StatusChange, SurgeSignal
from scorecards.selectors import fetch_series

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
MAX_BACKOFF = timedelta(hours=6)
# The evaluator's state columns with their PostgreSQL array types, written in one statement per batch.
STATE_COLUMNS = {
    "status": "varchar",
    "status_since": "timestamptz",
    "pending_status": "varchar",
    "pending_since": "timestamptz",
    "last_value": "float8",
    "last_measured_at": "timestamptz",
    "evaluated_at": "timestamptz",
    "next_evaluation_at": "timestamptz",
    "needs_evaluation": "boolean",
    "reason": "text",
    "version": "integer",
    "error": "text",
    "error_count": "integer",
    "last_surge_at": "timestamptz",
}


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
        direction=kpi.direction,
        thresholds=kpi.thresholds,
        target_value=kpi.target_value,
        target_by=kpi.target_by,
        baseline_value=kpi.baseline_value,
        baseline_at=kpi.baseline_at,
        aggregate_fn=kpi.aggregate_fn,
        aggregate_window=kpi.aggregate_window,
        stale_after=kpi.stale_after,
        pending_for=kpi.pending_for,
        keep_for=kpi.keep_for,
        recovery_margin=kpi.recovery_margin,
        surge_change=kpi.surge_change,
        surge_window=kpi.surge_window,
        forecast=kpi.forecast,
        unit=kpi.unit,
        tz=tz or kpi.organization.tzinfo,
    )


def state_of(kpi: Kpi) -> evaluator.State:
    return evaluator.State(
        status=kpi.status,
        status_since=kpi.status_since,
        pending_status=kpi.pending_status,
        pending_since=kpi.pending_since,
        last_surge_at=kpi.last_surge_at,
    )


def _due(due: Q, org_id: int | None):
    qs = Kpi.objects.filter(archived_at=None).filter(due)
    return qs.filter(organization_id=org_id) if org_id else qs


def evaluate_batch(*, now: datetime, due: Q, org_id: int | None = None, batch_size: int = BATCH_SIZE) -> SweepResult:
    result = SweepResult()
    with transaction.atomic():
        kpis = list(
            _due(due, org_id)
            # No ORDER BY: sorting every due row for each batch would make a sweep quadratic; a sweep
            # evaluates all of them anyway.
            .select_for_update(skip_locked=True)[:batch_size]
        )
        if not kpis:
            return result
        zones = {
            org.pk: org.tzinfo for org in Organization.objects.filter(pk__in={kpi.organization_id for kpi in kpis})
        }
        rules = {kpi.pk: rule_for(kpi, zones[kpi.organization_id]) for kpi in kpis}
        # Two reads, each for the KPIs that need it: whole series, or only the newest point (most KPIs).
        series = {}
        for newest in (True, False):
            group = [kpi.pk for kpi in kpis if evaluator.newest_only(rules[kpi.pk]) is newest]
            if group:
                since = now - max(evaluator.lookback(rules[pk]) for pk in group)
                series |= fetch_series(group, since, now, newest_only=newest)
        changes, surges = [], []
        for kpi in kpis:
            points = series[kpi.pk]
            newest = max(filter(None, [kpi.last_measured_at, points[-1][0] if points else None]), default=None)
            try:
                decision = evaluator.evaluate(rules[kpi.pk], state_of(kpi), points, newest, now)
            except Exception as error:  # one KPI's bad configuration must not stop the others
                log.exception("evaluation of KPI %s failed", kpi.pk)
                kpi.error = f"{type(error).__name__}: {error}"[:2000]
                kpi.error_count += 1
                kpi.needs_evaluation = False
                # Retry at the KPI's own pace first, then ever more slowly: a broken KPI must not flood the log.
                kpi.next_evaluation_at = now + min(kpi.evaluate_every * 2 ** (kpi.error_count - 1), MAX_BACKOFF)
                result.errors += 1
                continue
            if decision.changed:
                changes.append(
                    StatusChange(
                        organization_id=kpi.organization_id,
                        kpi=kpi,
                        old=decision.old_status,
                        new=decision.status,
                        value=decision.value,
                        thresholds=decision.thresholds,
                        reason=decision.reason,
                        changed_at=now,
                    )
                )
            if decision.surge is not None:
                surges.append(
                    SurgeSignal(
                        organization_id=kpi.organization_id,
                        kpi=kpi,
                        at=now,
                        previous=decision.surge.previous,
                        current=decision.surge.current,
                        change=decision.surge.change,
                    )
                )
            kpi.status, kpi.status_since = decision.status, decision.status_since
            kpi.pending_status, kpi.pending_since = decision.pending_status, decision.pending_since
            kpi.last_value, kpi.last_measured_at, kpi.reason = decision.value, newest, decision.reason
            kpi.last_surge_at = decision.last_surge_at
            kpi.evaluated_at, kpi.needs_evaluation = now, False
            kpi.next_evaluation_at = next_tick(kpi.next_evaluation_at, kpi.evaluate_every, now)
            kpi.error, kpi.error_count = "", 0
            kpi.version += 1
        _write_states(kpis)
        StatusChange.objects.bulk_create(changes)
        SurgeSignal.objects.bulk_create(surges)
    result.evaluated, result.changed, result.surges = len(kpis) - result.errors, len(changes), len(surges)
    return result


def _write_states(kpis: list[Kpi]) -> None:
    """All state columns of the batch in one UPDATE (bulk_update's CASE expressions cost ~5 ms per KPI)."""
    columns = list(STATE_COLUMNS)
    if connection.vendor != "postgresql":
        # SQLite (the local default) holds few KPIs; Django's bulk_update adapts its values correctly there.
        Kpi.objects.bulk_update(kpis, columns)
        return
    table = connection.ops.quote_name(Kpi._meta.db_table)
    arrays = ", ".join(f"%s::{kind}[]" for kind in ["bigint", *STATE_COLUMNS.values()])
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS k SET {assignments} FROM unnest({arrays}) AS v(id, {', '.join(columns)}) "
            "WHERE k.id = v.id",
            [[k.pk for k in kpis], *([getattr(k, c) for k in kpis] for c in columns)],
        )


def evaluate_due(
    *, now: datetime | None = None, org_id: int | None = None, batch_size: int = BATCH_SIZE
) -> SweepResult:
    """Evaluates every due KPI, batch after batch, until none is left (or only rows another sweep holds)."""
    now = now or timezone.now()
    total = SweepResult()
    # The two ways to be due are claimed one after the other, each through its own partial index: an OR of
    # both scans the table once per batch, which makes a sweep of N KPIs read N^2 / batch_size rows.
    for due in (Q(needs_evaluation=True), Q(next_evaluation_at__lte=now)):
        while True:
            batch = evaluate_batch(now=now, due=due, org_id=org_id, batch_size=batch_size)
            if not (batch.evaluated or batch.errors):
                break
            total += batch
    return total
