from celery import current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from governance import tenancy
from scorecards.evaluation.sweep import evaluate_due
from scorecards.ingestion.csv_import import measurement_import_fail, measurement_import_run
from scorecards.ingestion.pulls import data_source_pull, pull_due_sources
from scorecards.models import DataSource, DataSourceRun, ImportJob
from scorecards.storage import measurement_partitions_ensure, roll_up_due


@shared_task
def evaluate_kpis(org_id: int | None = None, *, fan_out: bool = True) -> dict:
    """Beat's evaluation sweep (or one organization's, queued when its data arrives); safe to run twice at once
    or after a redelivery (see scorecards.evaluation.sweep).

    The beat's sweep first queues EVALUATION_SWEEP_WORKERS - 1 copies of itself, so that as many workers share a
    large sweep: they split it batch by batch as any sweeps at once do (claims with SKIP LOCKED), and a copy that
    starts after the work is done finds nothing due and returns."""
    if org_id is None and fan_out:
        for _ in range(settings.EVALUATION_SWEEP_WORKERS - 1):
            evaluate_kpis.delay(fan_out=False)
    with tenancy.for_sweep(org_id):
        result = evaluate_due(org_id=org_id)
    if result.changed or result.surges:
        for name in settings.STATUS_CHANGE_FOLLOWUPS:
            current_app.tasks[name].delay(org_id=org_id)
    return vars(result)


@shared_task
def import_measurements(org_id: int, job_id: int) -> dict:
    """A large CSV file, checked and stored by a worker; a redelivered task finds the job finished and stops."""
    with tenancy.scope(organization=org_id):
        job = ImportJob.objects.filter(pk=job_id).select_related("organization", "created_by").defer("content").first()
        if job is None:
            return {}  # deleted with its organization
        try:
            job = measurement_import_run(job=job)
        except SoftTimeLimitExceeded:
            job = measurement_import_fail(job=job, message="took too long; split the file into smaller ones")
        except Exception:
            # Nothing was stored (all or nothing); the page must stop waiting, and the error goes to the log.
            message = "failed unexpectedly; nothing was stored, try again or ask an admin"
            measurement_import_fail(job=job, message=message)
            raise
        return {"state": job.state, "accepted": job.accepted, "problems": job.error_count}


@shared_task
def pull_data_sources(org_id: int | None = None) -> dict:
    """Beat's pull sweep: claims the due sources and queues one task per source, so that a slow source holds
    only its own task; two sweeps at once never claim a source twice (see scorecards.ingestion.pulls)."""
    with tenancy.for_sweep(org_id):
        result = pull_due_sources(
            org_id=org_id, dispatch=lambda run: pull_data_source.delay(run.organization_id, run.source_id, run.pk)
        )
        return vars(result)


@shared_task
def pull_data_source(org_id: int, source_id: int, run_id: int | None = None) -> dict:
    """One pull of one source, into the run the sweep or Run now recorded (a new one without `run_id`); a
    redelivered task finds its run finished and stops."""
    with tenancy.scope(organization=org_id):
        source = DataSource.objects.filter(pk=source_id).select_related("organization").first()
        if source is None:
            return {}  # deleted with its organization
        run = DataSourceRun.objects.filter(pk=run_id, source=source).first() if run_id else None
        run = data_source_pull(source=source, run=run)
        return {"rows": run.rows, "error": run.error}


@shared_task
def create_measurement_partitions() -> dict:
    """Beat's daily task: the coming months' measurement partitions (idempotent, safe under two beats)."""
    with tenancy.scope(system=True):
        return {"created": measurement_partitions_ensure()}


@shared_task
def roll_up_measurements() -> dict:
    """Beat's daily task: raw points past each organization's retention, rolled up per KPI and day."""
    with tenancy.scope(system=True):
        return roll_up_due()
