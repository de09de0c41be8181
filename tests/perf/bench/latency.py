"""`make bench` (part 8): seconds from data to decision.

A real worker (prefork, two processes) and a real beat run against the test database and the broker, as in
production. SAMPLES times, a breaching value for another KPI is POSTed to the API; the clock stops when the KPI's
owner has a delivered email about it (the workstream is open, the owner's task and in-app notification written,
the email handed to the backend). Then SAMPLES green surges: a value far above an upstream KPI's previous week,
still on track, POSTed one at a time; the clock stops when the downstream KPI's owner has their review task's
email. Evaluation queues the outbox processing, which queues delivery; the beat's minute sweeps are only the safety
net, so the figures show the chain, not the beat's period.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from functools import partial
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

from dependencies.services import dependency_create  # noqa: E402
from escalations.models import Notification  # noqa: E402
from governance import tenancy  # noqa: E402
from governance.services.api_tokens import api_token_create  # noqa: E402
from scorecards.models import Measurement  # noqa: E402
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


def surging_pairs(org, count: int) -> list[tuple]:
    """`count` upstream KPIs, each with two weeks of 100 a day behind it and a downstream KPI of its own owner
    (one owner per pair: a review groups what reaches one owner within minutes). Stored directly: nothing is queued
    before the clock starts."""
    later, green = timezone.now() + timedelta(days=1), {"warning": 50, "critical": 20}
    common = dict(organization=org, pending_for=timedelta(0), next_evaluation_at=later, thresholds=green)
    pairs = []
    for _ in range(count):
        upstream = KpiFactory(**common, surge_change="30%", surge_window=timedelta(days=7))
        downstream = KpiFactory(**common)
        dependency_create(actor=None, upstream=upstream, downstream=downstream, kind="drives_demand")
        pairs.append((upstream, downstream))
    now = timezone.now()
    Measurement.objects.bulk_create(
        Measurement(organization=org, kpi=upstream, at=now - timedelta(days=day), value=100)
        for upstream, _ in pairs
        for day in range(1, 15)
    )
    return pairs


def sample(client: Client, token: str, kpi, value: float = 500, reached=None) -> float:
    """Seconds from the POST of `value` for `kpi` to `reached()` (by default: the KPI's owner has an email)."""
    reached = reached or (lambda: emailed(kpi))
    body = {"measurements": [{"kpi": kpi.key, "at": timezone.now().isoformat(), "value": value}]}
    started = time.perf_counter()
    response = client.post(
        "/api/v1/measurements", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content
    deadline = started + 180
    while not reached():
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
            pairs = surging_pairs(org, SAMPLES)
            _, token = api_token_create(org=org, actor=None, name="bench")
        workers = processes()
        time.sleep(8)  # the worker's processes and the beat start up
        client = Client()
        with tenancy.scope(system=True):
            breaches = [sample(client, token, kpi) for kpi in kpis]
            # The newest value against the week before's (KPIs aggregate by their last value): +315%, still green.
            surges = [
                sample(client, token, upstream, 415, reached=partial(emailed, downstream))
                for upstream, downstream in pairs
            ]
        print(f"latency, {SAMPLES} breaches and {SAMPLES} green surges POSTed one at a time (real worker and beat):")
        for what, seconds in (
            ("a breach -> owner's email", breaches),
            ("a green surge -> downstream owner's review email", surges),
        ):
            seconds.sort()
            p50, p99 = statistics.median(seconds), seconds[max(0, round(0.99 * len(seconds)) - 1)]
            record("latency", f"POST of {what} handed to the backend, p50", p50, "s")
            record("latency", f"POST of {what} handed to the backend, p99", p99, "s", goal="< 5 s", met=p99 < 5)
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(timeout=30)
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
