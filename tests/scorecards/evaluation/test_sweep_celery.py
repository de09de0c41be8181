"""The evaluation sweep through real Celery workers and the real broker (Redis in CI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from config.celery import app as celery_app
from governance.services.api_tokens import api_token_create
from scorecards.models import Kpi, KpiSchedule, Measurement, StatusChange
from scorecards.tasks import evaluate_kpis
from tests.conftest import worker_settled
from tests.factories import KpiFactory, OrganizationFactory

ROOT = Path(__file__).resolve().parents[3]
needs_redis = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://") or connection.vendor != "postgresql",
    reason="needs the real broker (Redis) and PostgreSQL row locks",
)
pytestmark = [needs_redis, pytest.mark.django_db(transaction=True)]


def breached_kpis(count: int) -> list[Kpi]:
    """KPIs due now whose newest value is off track: each evaluation must write exactly one StatusChange."""
    org = OrganizationFactory()
    now = timezone.now()
    kpi = KpiFactory(organization=org, pending_for=timedelta(0), next_evaluation_at=now)
    kpis = [kpi] + Kpi.objects.bulk_create(
        Kpi(
            **{f.attname: getattr(kpi, f.attname) for f in Kpi._meta.concrete_fields if not f.primary_key}
            | {"key": f"bulk.{i}", "name": f"Bulk {i}"}
        )
        for i in range(count - 1)
    )
    KpiSchedule.objects.bulk_create(KpiSchedule(kpi=k, organization=org, next_evaluation_at=now) for k in kpis[1:])
    Measurement.objects.bulk_create(
        Measurement(organization=org, kpi=k, at=now - timedelta(minutes=1), value=500) for k in kpis
    )
    return kpis


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def purge_queue() -> None:
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def test_two_sweeps_delivered_at_once_each_shared_by_the_workers_write_each_change_once():
    kpis = breached_kpis(2000)  # each beat sweep queues a copy of itself (EVALUATION_SWEEP_WORKERS = 2): four sweeps
    purge_queue()
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        evaluate_kpis.delay(), evaluate_kpis.delay()
        wait_until(
            lambda: not Kpi.objects.filter(schedule__evaluated_at=None).exists(), 60, "every KPI to be evaluated"
        )
        worker_settled()  # the second sweep finishes its (empty) pass, the outbox processing it queued runs
    assert StatusChange.objects.count() == len(kpis)
    assert set(StatusChange.objects.values_list("new", flat=True)) == {"off_track"}


def test_data_sent_through_the_api_is_evaluated_by_a_worker_without_waiting_for_beat():
    kpi = KpiFactory(pending_for=timedelta(0), next_evaluation_at=timezone.now() + timedelta(days=1))
    _, token = api_token_create(org=kpi.organization, actor=None, name="loader")
    purge_queue()
    with start_worker(celery_app, pool="threads", concurrency=1, perform_ping_check=False, loglevel="WARNING"):
        body = {"measurements": [{"kpi": kpi.key, "at": timezone.now().isoformat(), "value": 500}]}
        response = Client().post(
            "/api/v1/measurements", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert response.status_code == 200
        # No beat runs here: only the evaluation queued when the data committed can write this row.
        wait_until(lambda: StatusChange.objects.filter(kpi=kpi).exists(), 30, "the queued evaluation")
        worker_settled()
    change = StatusChange.objects.get(kpi=kpi)
    assert (change.old, change.new, change.value) == ("no_data", "off_track", 500)


def subprocess_database_url() -> str:
    """The test database as the suite uses it: the runtime role on PostgreSQL (tests/conftest.py)."""
    db = connection.settings_dict
    role = db["OPTIONS"].get("assume_role")
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}" + (f"?assume_role={role}" if role else "")


def _subprocess_env() -> dict:
    """Worker and beat processes of our own, on the test database and the test broker."""
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": subprocess_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }


def _worker(env: dict, concurrency: int = 1) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            "--loglevel=WARNING",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_a_sweep_killed_mid_batch_is_redelivered_and_finishes_without_duplicates():
    kpis = breached_kpis(30000)
    purge_queue()
    env = _subprocess_env() | {"CELERY_VISIBILITY_TIMEOUT": "3"}
    worker = _worker(env)
    try:
        evaluate_kpis.delay()
        # Kill the worker (and its pool child) as soon as the first batches are committed.
        wait_until(lambda: Kpi.objects.exclude(schedule__evaluated_at=None).exists(), 90, "the sweep to start")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        done_before = Kpi.objects.exclude(schedule__evaluated_at=None).count()
        assert done_before < len(kpis), "the sweep finished before it could be killed; make it bigger"
        time.sleep(4)  # past the visibility timeout: the unacknowledged task becomes visible again
        worker = _worker(env)
        wait_until(lambda: not Kpi.objects.filter(schedule__evaluated_at=None).exists(), 120, "the redelivered sweep")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    assert StatusChange.objects.count() == len(kpis)
    assert StatusChange.objects.values("kpi").distinct().count() == len(kpis)


def _beat(env: dict, schedule: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=WARNING", "--schedule", str(schedule)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_two_beat_processes_produce_no_duplicates(tmp_path):
    """Two beats (say, a deploy that left the old one running) both send every sweep; nothing is done twice."""
    kpis = breached_kpis(500)
    purge_queue()
    env = _subprocess_env() | {"SWEEP_EVERY_SECONDS": "1"}
    # Two pool processes, so the two beats' sweeps really run at the same time.
    processes = [_worker(env, concurrency=2), _beat(env, tmp_path / "beat-1"), _beat(env, tmp_path / "beat-2")]
    try:
        wait_until(lambda: not Kpi.objects.filter(schedule__evaluated_at=None).exists(), 60, "the beats' sweeps")
        # Let both beats fire several more times; every new round finds nothing due.
        for _ in range(3):
            with transaction.atomic():  # rows locked in id order, as every writer of KPIs locks them
                list(Kpi.objects.order_by("pk").select_for_update().values_list("pk"))
                KpiSchedule.objects.update(needs_evaluation=True)
            time.sleep(3)
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert StatusChange.objects.count() == len(kpis)
    assert KpiSchedule.objects.filter(needs_evaluation=True).count() == 0
