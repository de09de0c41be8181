"""`make bench` (part 3): measurement ingestion through the real API stack, side by side with PostgreSQL COPY.

gunicorn serves the app on a test database; this process sends REQUESTS bodies of 10,000 measurements each
over one keep-alive HTTP connection (HTTP -> token -> validation -> PostgreSQL), then COPYs the same rows into
a table built like the measurements table (same columns and indexes). Reports both rates, their ratio, and
the web worker's memory across the requests. With a Redis broker (CELERY_BROKER_URL=redis://...) it also
starts a Celery worker and measures the end-to-end latency from POST /api/v1/measurements to the StatusChange
row that the evaluation queued on commit writes.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
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
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from governance.services.api_tokens import api_token_create  # noqa: E402
from scorecards.models import Kpi, Measurement, StatusChange  # noqa: E402
from tests.factories import KpiFactory, OrganizationFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "50"))
LATENCY_TRIES = 10
ITEMS, KPIS = 10_000, 1_000


def build():
    org = OrganizationFactory(slug="bench-ingest")
    template = KpiFactory(organization=org)
    fields = {f.attname: getattr(template, f.attname) for f in Kpi._meta.concrete_fields if not f.primary_key}
    Kpi.objects.bulk_create(Kpi(**fields | {"key": f"k.{i}", "name": f"K {i}"}) for i in range(KPIS - 1))
    keys = list(Kpi.objects.filter(organization=org).values_list("key", flat=True))
    _, token = api_token_create(org=org, actor=None, name="bench")
    return org, keys, token


def bodies(keys: list[str], now) -> list[bytes]:
    """Distinct points in every request (10 per KPI, a minute apart), so each one inserts 10,000 new rows."""
    out = []
    for r in range(REQUESTS):
        base = now - timedelta(days=30) + timedelta(hours=r)
        items = [
            {"kpi": key, "at": (base + timedelta(minutes=m)).isoformat(), "value": (i * 7 + m) % 1000 + 0.5}
            for m in range(ITEMS // len(keys))
            for i, key in enumerate(keys)
        ]
        out.append(json.dumps({"measurements": items}).encode())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")) / 1024


def subprocess_env() -> dict:
    db = connection.settings_dict
    return os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "API_RATE_LIMIT": "100000/m",
    }


def serve(port: int, env: dict) -> tuple[subprocess.Popen, int]:
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [
            bin_dir / "gunicorn",
            "-c",
            "python:config.gunicorn",
            "config.wsgi",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    worker = int(subprocess.check_output(["pgrep", "-P", str(server.pid)]).split()[0])
    return server, worker


def ingest(port: int, token: str, payloads: list[bytes], worker: int) -> tuple[float, list[float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Host": "127.0.0.1"}
    memory, elapsed = [], 0.0
    for body in payloads:
        started = time.perf_counter()
        conn.request("POST", "/api/v1/measurements", body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        elapsed += time.perf_counter() - started
        assert response.status == 200, answer[:500]
        memory.append(rss_mb(worker))
    conn.close()
    return elapsed, memory


def copy_rate(org_id: int, payloads: list[bytes]) -> float:
    """COPY of exactly the rows the API stored, into a table with the measurements table's indexes."""
    rows = io.StringIO()
    ids = dict(Kpi.objects.filter(organization_id=org_id).values_list("key", "pk"))
    now = timezone.now().isoformat()
    for body in payloads:
        for item in json.loads(body)["measurements"]:
            rows.write(f"{org_id}\t{ids[item['kpi']]}\t{item['at']}\t{item['value']}\tapi\t{now}\n")
    data = rows.getvalue()
    table = Measurement._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE bench_copy (LIKE {table} INCLUDING ALL)")
        started = time.perf_counter()
        with cursor.connection.cursor().copy(
            "COPY bench_copy (organization_id, kpi_id, at, value, source, ingested_at) FROM STDIN"
        ) as copy:
            copy.write(data)
        return time.perf_counter() - started


def latency(port: int, token: str, org, env: dict) -> list[float]:
    """Seconds from sending a breaching (or recovering) value to its StatusChange row, LATENCY_TRIES times."""
    kpi = KpiFactory(organization=org, key="latency", pending_for=timedelta(0), keep_for=timedelta(0))
    worker = subprocess.Popen(
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
        env=env,
        stdout=subprocess.DEVNULL,
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Host": "127.0.0.1"}
    seconds = []
    try:
        time.sleep(3)  # the worker connects to the broker
        for i in range(LATENCY_TRIES):
            seen = StatusChange.objects.filter(kpi=kpi).count()
            value = 500 if i % 2 == 0 else 2000  # off track, then back on track
            body = json.dumps({"measurements": [{"kpi": kpi.key, "at": timezone.now().isoformat(), "value": value}]})
            started = time.perf_counter()
            conn.request("POST", "/api/v1/measurements", body=body, headers=headers)
            assert conn.getresponse().read() and True
            while StatusChange.objects.filter(kpi=kpi).count() == seen:
                assert time.perf_counter() - started < 30, "no StatusChange within 30 s"
                time.sleep(0.005)
            seconds.append(time.perf_counter() - started)
    finally:
        conn.close()
        worker.terminate()
        worker.wait()
    return seconds


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    server = None
    try:
        assert connection.vendor == "postgresql", "run the ingestion bench with DATABASE_URL on PostgreSQL"
        org, keys, token = build()
        payloads = bodies(keys, timezone.now())
        connection.close()  # gunicorn's worker opens its own connections
        port = free_port()
        env = subprocess_env()
        server, worker = serve(port, env)
        api_seconds, memory = ingest(port, token, payloads, worker)
        stored = Measurement.objects.filter(organization=org).count()
        assert stored == REQUESTS * ITEMS, stored
        copy_seconds = copy_rate(org.pk, payloads)
        api_rate, copy_per_s = stored / api_seconds, stored / copy_seconds
        print(f"ingestion, {REQUESTS} requests x {ITEMS:,} measurements over HTTP (gunicorn, 1 worker):")
        record("ingestion", "API", api_rate, "measurements/s", goal=">= 50,000/s", met=api_rate >= 50_000)
        record("ingestion", "API, per request", api_seconds / REQUESTS * 1000, "ms")
        record("ingestion", "COPY of the same rows into an identically indexed table", copy_per_s, "rows/s")
        ratio = copy_per_s / api_rate
        record("ingestion", "ratio COPY / API", ratio, "x", goal="<= 5x", met=ratio <= 5)
        samples = ", ".join(f"{memory[i - 1]:.0f}" for i in sorted({1, *range(10, REQUESTS + 1, 10), REQUESTS}))
        print(f"  web worker memory (MB) after requests 1, 10, 20, ...: {samples} (goal: flat)")
        record("ingestion", "web worker memory growth, first to last request", memory[-1] - memory[0], "MB")
        if settings.CELERY_BROKER_URL.startswith("redis://"):
            seconds = sorted(latency(port, token, org, env))
            print(f"  end-to-end latency, POST -> StatusChange (real worker, Redis, no beat), {len(seconds)} samples:")
            record("ingestion", "end-to-end latency, median", seconds[len(seconds) // 2] * 1000, "ms")
            worst = seconds[-1]
            record("ingestion", "end-to-end latency, worst", worst * 1000, "ms", goal="p99 < 60 s", met=worst < 60)
        else:
            print("  end-to-end latency: skipped (set CELERY_BROKER_URL=redis://... to measure it)")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
