"""`make bench` (part 8): seconds from data to decision.

A real worker (prefork, two processes) and a real beat run against the test database and the broker, as in
production. SAMPLES times, a breaching value for another KPI is POSTed to the API; the clock stops when the KPI's
owner has a delivered email about it (the workstream is open, the owner's task and in-app notification written,
the email handed to the backend). Evaluation queues the outbox processing, which queues delivery; the beat's
minute sweeps are only the safety net, so the figures show the chain, not the beat's period.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from escalations.models import Notification  # noqa: E402
from governance import tenancy  # noqa: E402
from governance.services.api_tokens import api_token_create  # noqa: E402
from tests.factories import KpiFactory, OrganizationFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

SAMPLES = int(os.environ.get("BENCH_LATENCY_SAMPLES", "50"))
ROOT = Path(__file__).resolve().parents[3]


def processes() -> list[subprocess.Popen]:
    db = connection.settings_dict
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    celery = [sys.executable, "-m", "celery", "-A", "config"]
    quiet = {"cwd": ROOT, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    schedule = ROOT / "var" / "bench" / "latency-beat-schedule"
    return [
        subprocess.Popen([*celery, "worker", "--pool=prefork", "--concurrency=2", "--without-mingle"], **quiet),
        subprocess.Popen([*celery, "beat", "-s", str(schedule)], **quiet),
    ]


def emailed(kpi) -> bool:
    return Notification.objects.filter(recipient=kpi.owner, channel="email").exclude(delivered_at=None).exists()


def sample(client: Client, token: str, kpi) -> float:
    body = {"measurements": [{"kpi": kpi.key, "at": timezone.now().isoformat(), "value": 500}]}
    started = time.perf_counter()
    response = client.post(
        "/api/v1/measurements", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content
    deadline = started + 180
    while not emailed(kpi):
        assert time.perf_counter() < deadline, f"{kpi.key}: no email after 180 s"
        time.sleep(0.02)
    return time.perf_counter() - started


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0, interactive=False)  # a test database left by a killed run is replaced
    old = runner.setup_databases()
    workers: list[subprocess.Popen] = []
    try:
        assert connection.vendor == "postgresql", "run the latency bench with DATABASE_URL on PostgreSQL"
        with tenancy.scope(system=True):
            org = OrganizationFactory(slug="bench-latency")
            later = timezone.now() + timedelta(days=1)  # only the data's arrival makes them due
            kpis = [
                KpiFactory(organization=org, pending_for=timedelta(0), next_evaluation_at=later) for _ in range(SAMPLES)
            ]
            _, token = api_token_create(org=org, actor=None, name="bench")
        workers = processes()
        time.sleep(8)  # the worker's processes and the beat start up
        client = Client()
        with tenancy.scope(system=True):
            seconds = sorted(sample(client, token, kpi) for kpi in kpis)
        p50, p99 = statistics.median(seconds), seconds[max(0, round(0.99 * len(seconds)) - 1)]
        print(f"latency, {SAMPLES} breaches POSTed one at a time (real worker and beat, PostgreSQL, Redis):")
        record("latency", "POST of a breach -> owner's email handed to the backend, p50", p50, "s")
        record(
            "latency",
            "POST of a breach -> owner's email handed to the backend, p99",
            p99,
            "s",
            goal="< 5 s",
            met=p99 < 5,
        )
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(timeout=30)
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
