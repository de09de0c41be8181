"""Scheduled and manual pulls of data sources: one run reads every pull of a source through its connector,
checks all rows with the one `Checker` and stores them all or none.

The sweep claims due sources with SELECT ... FOR UPDATE SKIP LOCKED and, in that short transaction, moves their
`next_run_at` on and records a run for each; the pulls themselves run afterwards, outside any transaction (a
query may take its whole statement timeout). A source with an unfinished run is never claimed, so two beats,
two workers or a redelivered sweep never pull one source twice at once. A failed run backs its source off
(every, 2x, 4x ... at most 6 h); the next good run resets that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from governance import tenancy
from governance.models import User
from governance.services.audit import audit_log
from scorecards.connectors.base import PullError, Unreadable
from scorecards.connectors.registry import connector_for
from scorecards.evaluation.sweep import next_tick
from scorecards.ingestion.checker import Checker, Problem
from scorecards.ingestion.store import measurements_store
from scorecards.models import DataSource, DataSourceRun, Measurement

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=6)
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)  # `since` of a KPI without data: everything the source has
SHORTEST_EVERY = timedelta(minutes=1)  # a zero `every` stored by hand must not make a source run on every sweep
CLAIM_BATCH = 100
SHOWN_PROBLEMS = 5  # a rejected run's error lists this many problems, then counts the rest
MEASUREMENT_SOURCE = "pull"  # Measurement.source of pulled rows (the API writes "api", CSV imports "csv")
UNEXPECTED = "the pull stopped on an unexpected error; the worker's log has the details"
LOST = "no worker finished this run (it was lost, e.g. with a restarted broker)"


@dataclass
class PullSweepResult:
    claimed: int = 0
    rows: int = 0
    failed: int = 0


def backoff(every: timedelta, failures: int) -> timedelta:
    """The wait after the `failures`-th failed run in a row: every x 2^(failures-1), at most MAX_BACKOFF."""
    wait = min(max(every, SHORTEST_EVERY), MAX_BACKOFF)
    # Doubling a minute 9 times passes 6 hours, so the loop is short and a long streak cannot overflow.
    for _ in range(min(failures - 1, 10)):
        wait = min(wait * 2, MAX_BACKOFF)
    return wait


def run_lost_after() -> timedelta:
    """An unfinished run older than this was lost: its task would have hit the hard time limit long ago."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) + timedelta(minutes=10)


def unfinished_runs(*, now: datetime) -> Q:
    """Runs still queued or running (not lost): a source has at most one."""
    return Q(finished_at=None, started_at__gte=now - run_lost_after())


# --- the sweep ----------------------------------------------------------------------------------------------


def data_sources_claim_due(
    *, now: datetime, org_id: int | None = None, limit: int = CLAIM_BATCH
) -> list[DataSourceRun]:
    """Claims up to `limit` due sources and records a scheduled run for each; returns the runs (not yet pulled)."""
    running = DataSourceRun.objects.filter(unfinished_runs(now=now), source=OuterRef("pk"))
    due = (
        DataSource.objects.filter(archived_at=None, paused_at=None)
        .filter(Q(next_run_at=None) | Q(next_run_at__lte=now))
        .exclude(Exists(running))
    )
    if org_id:
        due = due.filter(organization_id=org_id)
    with transaction.atomic():
        claimed = []
        for source in due.select_for_update(skip_locked=True)[:limit]:
            moved = next_tick(source.next_run_at, max(source.every, SHORTEST_EVERY), now)
            # Guarded as well: where FOR UPDATE does nothing (SQLite), a second sweep's update finds the row moved.
            if DataSource.objects.filter(pk=source.pk, next_run_at=source.next_run_at).update(next_run_at=moved):
                source.next_run_at = moved
                claimed.append(source)
        # Any other unfinished run of a claimed source is older than run_lost_after: close it so that it stops
        # showing as running.
        DataSourceRun.objects.filter(source__in=claimed, finished_at=None).update(finished_at=now, error=LOST)
        runs = DataSourceRun.objects.bulk_create(
            DataSourceRun(
                organization_id=source.organization_id,
                source=source,
                trigger=DataSourceRun.Trigger.SCHEDULE,
                started_at=now,
            )
            for source in claimed
        )
    return runs


def pull_due_sources(
    *,
    now: datetime | None = None,
    org_id: int | None = None,
    dispatch: Callable[[DataSourceRun], object] | None = None,
    limit: int = CLAIM_BATCH,
) -> PullSweepResult:
    """Claims every due source and pulls each one here, or hands each run to `dispatch` (a Celery task per
    source, so that one slow source cannot hold the others); one source's failure never stops the rest."""
    now = now or timezone.now()
    result = PullSweepResult()
    runs = data_sources_claim_due(now=now, org_id=org_id, limit=limit)
    while runs:
        result.claimed += len(runs)
        for run in runs:
            if dispatch is not None:
                dispatch(run)
                continue
            try:
                # Each pull in its organization's scope, as its own task would be: only there are its secrets read.
                with tenancy.scope(organization=run.organization_id):
                    run = data_source_pull(source=run.source, trigger=run.trigger, run=run)
            except Exception:  # data_source_pull records its errors; this is a bug, and must not stop the sweep
                log.exception("pull of data source %s failed", run.source_id)
                result.failed += 1
                continue
            result.rows += run.rows
            result.failed += bool(run.error)
        # A short batch was the last one: nothing else is due.
        runs = data_sources_claim_due(now=now, org_id=org_id, limit=limit) if len(runs) == limit else []
    return result


# --- one run ------------------------------------------------------------------------------------------------


@transaction.atomic
def data_source_run_request(*, source: DataSource, actor: User) -> DataSourceRun:
    """Run now: records a manual run and queues it for a worker once this commits."""
    now = timezone.now()
    # The source's row lock orders this against a sweep claiming the same source: one of them sees the other's run.
    source = DataSource.objects.select_for_update().get(pk=source.pk)
    if source.archived_at is not None:
        raise ValidationError("This data source is archived; a manifest that names it again restores it.")
    if source.runs.filter(unfinished_runs(now=now)).exists():
        raise ValidationError("A run of this source is already on its way.")
    run = DataSourceRun.objects.create(
        organization_id=source.organization_id,
        source=source,
        trigger=DataSourceRun.Trigger.MANUAL,
        requested_by=actor,
        started_at=now,
    )
    audit_log(org=source.organization, actor=actor, verb="data_source.run_requested", obj=source, after={"run": run.pk})
    transaction.on_commit(lambda: _queue(run), robust=True)
    return run


def _queue(run: DataSourceRun) -> None:
    # By name: scorecards.tasks imports this module (ScorecardsConfig.ready registers the tasks).
    current_app.tasks["scorecards.tasks.pull_data_source"].delay(run.organization_id, run.source_id, run.pk)


def data_source_pull(
    *,
    source: DataSource,
    trigger: str = DataSourceRun.Trigger.SCHEDULE,
    actor: User | None = None,
    run: DataSourceRun | None = None,
) -> DataSourceRun:
    """Pulls `source` once and records it in `run` (a new one when None); returns the finished run.

    Never raises for a failing source: what went wrong is the run's `error`, and the source backs off.
    """
    started = timezone.now()
    if run is None:
        run = DataSourceRun.objects.create(
            organization_id=source.organization_id,
            source=source,
            trigger=trigger,
            requested_by=actor,
            started_at=started,
        )
    elif not DataSourceRun.objects.filter(pk=run.pk, finished_at=None).update(started_at=started):
        run.refresh_from_db()  # a redelivered task: this run has finished already
        return run
    run.started_at = started
    rows, error = 0, ""
    try:
        rows = _pull(source, started)
    except PullError as e:
        error = str(e)
    except SoftTimeLimitExceeded:
        error = "the pull took longer than the worker's time limit; split the source or narrow its queries"
    except Exception:
        log.exception("pull of data source %s failed", source.pk)
        error = UNEXPECTED
    return _finish(source=source, run=run, rows=rows, error=error)


def _pull(source: DataSource, now: datetime) -> int:
    """Reads every pull of the source and stores the rows when all of them are good; returns how many."""
    checker, kpi_of = _read(source, now)
    if not checker.ok:
        raise PullError(_rejection(checker.problems, len(kpi_of), kpi_of))
    return measurements_store(org=source.organization, rows=checker.rows, source=MEASUREMENT_SOURCE)


def _read(source: DataSource, now: datetime) -> tuple[Checker, dict[int, str]]:
    """Every pull's rows, checked; and the KPI key of each row number."""
    org = source.organization
    pulls = (source.config or {}).get("pulls") or []
    if not pulls:
        raise PullError("the source has no pulls; the manifest names them")
    # A date or a time without a zone is the organization's.
    checker = Checker(org, now=now, naive_tz=org.tzinfo, unit="row")
    keys = [pull.get("kpi") for pull in pulls]
    # Everything read before the source, in one short transaction: the KPIs, their newest times, the credentials.
    with transaction.atomic():
        checker.resolve(keys)
        missing = [key for key in keys if not checker.kpi_ids.get(key)]
        if missing:
            raise PullError(f'the pulls name the unknown or archived KPI "{missing[0]}"')
        since = _newest(checker.kpi_ids.values())
        connector = connector_for(source)
    kpi_of: dict[int, str] = {}  # row number -> KPI key, for the error
    with connector:
        for pull in pulls:
            key = pull["kpi"]
            for row in connector.rows(pull, since.get(checker.kpi_ids[key], LONG_AGO)):
                number = len(kpi_of) + 1
                kpi_of[number] = key
                if isinstance(row, Unreadable):
                    checker.problem(number, "", row.message)
                else:
                    checker.add(number, key, *row)
    return checker, kpi_of


@dataclass
class DryPull:
    """What a run of the source would store, stored nowhere: the first rows and every problem, or its error."""

    count: int = 0
    rows: list[tuple[str, datetime, float]] = field(default_factory=list)  # the first SHOWN_ROWS, as checked
    problems: list[str] = field(default_factory=list)
    error: str = ""


SHOWN_ROWS = 10


def data_source_dry_pull(*, source: DataSource) -> DryPull:
    """Test the connection: reads and checks everything a run would, and stores nothing (no run, no measurement);
    `source` may be unsaved (the form being filled in)."""
    result = DryPull()
    try:
        checker, kpi_of = _read(source, timezone.now())
    except PullError as e:
        result.error = str(e)
        return result
    except SoftTimeLimitExceeded:
        result.error = "the pull took longer than the worker's time limit; split the source or narrow its queries"
        return result
    keys = {kpi_id: key for key, kpi_id in checker.kpi_ids.items()}
    result.count = len(kpi_of)
    result.rows = [(keys[kpi_id], at, value) for kpi_id, at, value in checker.rows[:SHOWN_ROWS]]
    result.problems = _rejection(checker.problems, len(kpi_of), kpi_of).splitlines()[1:] if checker.problems else []
    return result


def _newest(kpi_ids: Iterable[int | None]) -> dict[int, datetime]:
    """The newest stored measurement time of each KPI: a pull asks only for what came after it."""
    rows = Measurement.objects.filter(kpi_id__in=[i for i in kpi_ids if i]).values("kpi_id").annotate(newest=Max("at"))
    return {row["kpi_id"]: row["newest"] for row in rows.order_by()}


def _rejection(problems: list[Problem], count: int, kpi_of: dict[int, str]) -> str:
    lines = [f"Rejected all {count:,} rows; nothing was stored. One bad row rejects the run:"]
    for p in problems[:SHOWN_PROBLEMS]:
        field = f" {p.field}" if p.field else ""
        lines.append(f"row {p.where} ({kpi_of.get(p.where, '?')}){field}: {p.message}")
    if len(problems) > SHOWN_PROBLEMS:
        lines.append(f"and {len(problems) - SHOWN_PROBLEMS:,} more problem(s)")
    return "\n".join(lines)


def _finish(*, source: DataSource, run: DataSourceRun, rows: int, error: str) -> DataSourceRun:
    with transaction.atomic():
        locked = DataSource.objects.select_for_update().get(pk=source.pk)
        was_failing = locked.failures > 0
        if error:
            locked.failures += 1
            locked.next_run_at = run.started_at + backoff(locked.every, locked.failures)
        else:
            locked.failures = 0
            # Back on schedule: a good run ends a backoff, and never delays a sweep already planned sooner.
            soonest = run.started_at + max(locked.every, SHORTEST_EVERY)
            locked.next_run_at = min(locked.next_run_at, soonest) if locked.next_run_at else soonest
        locked.save(update_fields=["failures", "next_run_at"])
        run.finished_at, run.rows, run.error = timezone.now(), rows, error
        run.save(update_fields=["started_at", "finished_at", "rows", "error"])
        # The runs are the record of every pull; the audit log keeps only when a source broke and recovered.
        if error and not was_failing:
            after = {"run": run.pk, "error": error.splitlines()[0]}
            audit_log(org=locked.organization, actor=None, verb="data_source.failing", obj=locked, after=after)
        elif was_failing and not error:
            audit_log(
                org=locked.organization, actor=None, verb="data_source.recovered", obj=locked, after={"run": run.pk}
            )
    source.failures, source.next_run_at = locked.failures, locked.next_run_at
    return run
