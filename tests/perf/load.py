"""`make load`: gunicorn on PostgreSQL and Redis, driven from this process for LOAD_SECONDS (60 by default).

Builds a fresh database (LOAD_DATABASE, `steerco_load` by default) with one organization of 200 KPIs on one
scorecard, 30 daily points each, starts gunicorn with the production settings, then runs LOAD_CLIENTS
concurrent clients that cycle through the scorecard page, a KPI page and `POST /api/v1/measurements` (10 items
per request). Prints requests/s, p50 and p99 per request kind and every error. Afterwards it counts the stored
measurements: every item acknowledged with a 2xx must be there. Exits non-zero on any error or loss.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
DB_NAME = os.environ.get("LOAD_DATABASE", "steerco_load")
SERVER = os.environ.get("LOAD_SERVER", "postgres://postgres@127.0.0.1:5432")
SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
CLIENTS = int(os.environ.get("LOAD_CLIENTS", "8"))
WORKERS = int(os.environ.get("LOAD_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
PORT = int(os.environ.get("LOAD_PORT", "8199"))
KPIS, DAYS, ITEMS = 200, 30, 10

# gunicorn connects as the runtime role, which row-level security binds (production refuses a superuser);
# migrations and the set-up connect as the owner, SERVER's login.
RUNTIME_ROLE = "steerco_app"
RUNTIME_URL = f"postgres://{RUNTIME_ROLE}@{urlsplit(SERVER).hostname}:{urlsplit(SERVER).port or 5432}/{DB_NAME}"
ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DATABASE_URL": RUNTIME_URL,
    "CELERY_BROKER_URL": os.environ.get("LOAD_BROKER_URL", "redis://127.0.0.1:6379/8"),
    # One cache for every worker, as in production: a scorecard row rendered by one is kept for all of them.
    "CACHE_URL": os.environ.get("LOAD_BROKER_URL", "redis://127.0.0.1:6379/8"),
    "SECRET_KEY": secrets.token_hex(32),
    "API_TOKEN_KEY": secrets.token_hex(32),
    "SECRETS_KEYS": Fernet.generate_key().decode(),
    "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback; TLS would end at a load balancer
    "ALLOWED_HOSTS": "127.0.0.1",
    "CONN_MAX_AGE": "60",
    # The measured load is one token posting far above the default 600/min: the limit would answer 429s.
    "API_RATE_LIMIT": "1000000/m",
    "LOG_LEVEL": "WARNING",
}
OWNER_ENV = ENV | {"DATABASE_URL": f"{SERVER}/{DB_NAME}"}


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=OWNER_ENV, check=True)


def fresh_database() -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    manage("migrate", "--noinput", "-v", "0")
    manage("runtime_role", RUNTIME_ROLE)
    manage("collectstatic", "--noinput", "-v", "0")


def build() -> dict:
    """The organization, a logged-in executive's session cookie, an API token, the KPI ids and keys."""
    django_env = (
        "DJANGO_SETTINGS_MODULE",
        "DATABASE_URL",
        "CACHE_URL",
        "SECRET_KEY",
        "API_TOKEN_KEY",
        "SECRETS_KEYS",
        "LOG_LEVEL",
    )
    os.environ.update({name: OWNER_ENV[name] for name in django_env})
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache

    cache.clear()  # an earlier run's rows: its organization had the same ids
    from django.test import Client

    from governance.models import Role
    from governance.services.api_tokens import api_token_create
    from scorecards.models import Kpi, Measurement, Scorecard
    from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory

    org = OrganizationFactory(slug="load")
    executive = MembershipFactory(organization=org, role=Role.EXECUTIVE)
    teams = [TeamFactory(organization=org) for _ in range(10)]
    now = datetime.now(UTC)
    kpis = Kpi.objects.bulk_create(
        Kpi(
            organization=org,
            key=f"load.kpi_{i:03}",
            name=f"Load KPI {i:03}",
            team=teams[i % len(teams)],
            owner=executive,
            unit="units",
            target_value=100,
            thresholds={"warning": 90, "critical": 80},
            cadence=timedelta(days=1),
            stale_after=timedelta(days=3),
            evaluate_every=timedelta(hours=1),
            pending_for=timedelta(0),
            keep_for=timedelta(0),
            last_value=95,
            last_measured_at=now,
        )
        for i in range(KPIS)
    )
    Measurement.objects.bulk_create(
        Measurement(organization=org, kpi=kpi, at=now - timedelta(days=d), value=85 + (d * 7 + kpi.pk) % 20)
        for kpi in kpis
        for d in range(DAYS)
    )
    scorecard = Scorecard.objects.create(organization=org, name="Load", key="load")
    scorecard.kpis.set(kpis)
    client = Client()
    client.force_login(executive.user)
    _, token = api_token_create(org=org, actor=None, name="load")
    return {
        "cookie": {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value},
        "token": token,
        "kpi_ids": [k.pk for k in kpis],
        "keys": [k.key for k in kpis],
        "scorecard": scorecard.pk,
        "org_id": org.pk,
    }


def start_gunicorn() -> subprocess.Popen:
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-c",
            "python:config.gunicorn",
            "config.wsgi",
            "-w",
            str(WORKERS),
            "-b",
            f"127.0.0.1:{PORT}",
        ],
        cwd=ROOT,
        env=ENV,
    )
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not answer /healthz within 20 s")


class Drive:
    def __init__(self, data: dict) -> None:
        self.data = data
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.accepted = 0
        self.minutes = itertools.count(1)  # each POST writes new (kpi, at) pairs: one minute further back

    async def client(self, n: int, until: float) -> None:
        base = f"http://127.0.0.1:{PORT}"
        async with httpx.AsyncClient(base_url=base, cookies=self.data["cookie"], timeout=30) as http:
            kinds = itertools.cycle(["scorecard", "kpi", "measurements"])
            for _ in range(n):
                next(kinds)  # clients start at different kinds
            while time.monotonic() < until:
                kind = next(kinds)
                start = time.perf_counter()
                try:
                    response = await self.request(http, kind)
                except httpx.HTTPError as exc:
                    self.errors[f"{kind}: {type(exc).__name__}"] += 1
                    continue
                self.latencies[kind].append(time.perf_counter() - start)
                if response.status_code >= 400:
                    self.errors[f"{kind}: HTTP {response.status_code}"] += 1
                elif kind == "measurements":
                    self.accepted += response.json()["accepted"]

    async def request(self, http: httpx.AsyncClient, kind: str) -> httpx.Response:
        ids = self.data["kpi_ids"]
        if kind == "scorecard":
            return await http.get(f"/o/load/scorecards/{self.data['scorecard']}/")
        if kind == "kpi":
            return await http.get(f"/o/load/kpis/{ids[secrets.randbelow(len(ids))]}/")
        at = (datetime.now(UTC) - timedelta(days=DAYS, minutes=next(self.minutes))).isoformat()
        keys = self.data["keys"]
        items = [{"kpi": keys[secrets.randbelow(len(keys))], "at": at, "value": 90 + i} for i in range(ITEMS)]
        # Duplicate keys in one request would count as one stored row: keep the items distinct.
        items = list({item["kpi"]: item for item in items}.values())
        headers = {"Authorization": f"Bearer {self.data['token']}"}
        return await http.post("/api/v1/measurements", json={"measurements": items}, headers=headers)

    async def run(self) -> float:
        start = time.monotonic()
        await asyncio.gather(*(self.client(n, start + SECONDS) for n in range(CLIENTS)))
        return time.monotonic() - start


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(drive: Drive, elapsed: float, stored: int, web_cpu: float) -> bool:
    total = sum(len(v) for v in drive.latencies.values())
    print(f"\nload: {elapsed:.0f} s, {CLIENTS} clients, gunicorn -w {WORKERS}, PostgreSQL + Redis, {KPIS} KPIs")
    print(f"  {'request':<14}{'count':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for kind, values in sorted(drive.latencies.items()):
        ms = [v * 1000 for v in values]
        print(f"  {kind:<14}{len(ms):>8}{len(ms) / elapsed:>9.1f}{percentile(ms, 50):>9.1f}{percentile(ms, 99):>9.1f}")
    print(f"  {'all':<14}{total:>8}{total / elapsed:>9.1f}")
    # Seconds of CPU per request hardly move with what else the machine runs, where requests per second do.
    print(f"  gunicorn CPU per request (start-up included): {web_cpu / total * 1000:.1f} ms")
    print(f"  errors: {sum(drive.errors.values())} (goal: 0)")
    for what, count in drive.errors.most_common():
        print(f"    {count} x {what}")
    print(f"  measurements acknowledged with 2xx: {drive.accepted}; new rows stored: {stored}")
    return not drive.errors and stored == drive.accepted


def main() -> None:
    fresh_database()
    data = build()
    from scorecards.models import Measurement

    before = Measurement.objects.filter(organization_id=data["org_id"]).count()
    started = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = start_gunicorn()
    try:
        drive = Drive(data)
        elapsed = asyncio.run(drive.run())
    finally:
        server.terminate()
        server.wait(timeout=30)
    # gunicorn's master and its workers, which it has reaped: what the children used since it started.
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    web_cpu = ended.ru_utime + ended.ru_stime - started.ru_utime - started.ru_stime
    stored = Measurement.objects.filter(organization_id=data["org_id"]).count() - before
    sys.exit(0 if report(drive, elapsed, stored, web_cpu) else 1)


if __name__ == "__main__":
    main()
