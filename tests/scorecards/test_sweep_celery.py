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
from django.db import connection
from django.utils import timezone

from config.celery import app as celery_app
from scorecards.models import Kpi, Measurement, StatusChange
from scorecards.tasks import evaluate_kpis
from tests.factories import KpiFactory, OrganizationFactory

ROOT = Path(__file__).resolve().parents[2]
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


def test_two_sweeps_delivered_at_once_write_each_change_once():
    kpis = breached_kpis(2000)
    purge_queue()
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        evaluate_kpis.delay(), evaluate_kpis.delay()
        wait_until(lambda: not Kpi.objects.filter(evaluated_at=None).exists(), 60, "every KPI to be evaluated")
        time.sleep(1)  # let the second sweep finish its (empty) pass
    assert StatusChange.objects.count() == len(kpis)
    assert set(StatusChange.objects.values_list("new", flat=True)) == {"off_track"}


def _worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
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
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{connection.settings_dict['USER']}@{connection.settings_dict['HOST']}:"
        f"{connection.settings_dict['PORT']}/{connection.settings_dict['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_VISIBILITY_TIMEOUT": "3",
    }
    worker = _worker(env)
    try:
        evaluate_kpis.delay()
        # Kill the worker (and its pool child) as soon as the first batches are committed.
        wait_until(lambda: Kpi.objects.exclude(evaluated_at=None).exists(), 90, "the sweep to start")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        done_before = Kpi.objects.exclude(evaluated_at=None).count()
        assert done_before < len(kpis), "the sweep finished before it could be killed; make it bigger"
        time.sleep(4)  # past the visibility timeout: the unacknowledged task becomes visible again
        worker = _worker(env)
        wait_until(lambda: not Kpi.objects.filter(evaluated_at=None).exists(), 120, "the redelivered sweep")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    assert StatusChange.objects.count() == len(kpis)
    assert StatusChange.objects.values("kpi").distinct().count() == len(kpis)
