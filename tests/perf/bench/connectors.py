"""`make bench`: a pull of 100,000 rows from each local database (PostgreSQL, SQLite file, DuckDB file, MariaDB)
through the sql connector, side by side with the API's ingestion rate on the same machine.

Each pull is the whole run a worker makes (connect, read through the connector, check every row, store them);
the read alone is reported too. The API figure is the ingestion bench's measurement (gunicorn, one worker,
requests of 10,000 measurements) over BENCH_CONNECTOR_API_REQUESTS requests (10: the same 100,000 rows).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
os.environ["BENCH_REQUESTS"] = os.environ.get("BENCH_CONNECTOR_API_REQUESTS", "10")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from scorecards.connectors.sql import SqlConnector  # noqa: E402
from scorecards.ingestion.pulls import LONG_AGO, data_source_pull  # noqa: E402
from scorecards.models import DataSource, Measurement  # noqa: E402
from tests.factories import KpiFactory  # noqa: E402
from tests.perf.bench import ingestion  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402
from tests.scorecards.connectors.warehouses import BACKENDS, Unavailable, warehouse  # noqa: E402

ROWS = 100_000
START = datetime(2026, 1, 1, tzinfo=UTC)


def rows() -> list[tuple[str, float]]:
    """A minute apart, so that every row is a new measurement of one KPI."""
    return [((START + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S"), (i % 1000) + 0.25) for i in range(ROWS)]


def postgres_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgresql://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def pull(org, backend: str, url: str, table: str) -> tuple[float, float]:
    """Seconds to read the rows through the connector alone, and for the whole pull that stores them."""
    os.environ["BENCH_WAREHOUSE_DSN"] = url
    query = f"select day as at, turnover as value from {table} where day > :since"
    config = {"dsn_env": "BENCH_WAREHOUSE_DSN"}
    started = time.perf_counter()
    with SqlConnector(config, org=org) as connector:
        read = connector.rows({"kpi": "x", "query": query}, LONG_AGO)
    read_seconds = time.perf_counter() - started
    assert len(read) == ROWS, len(read)
    kpi = KpiFactory(organization=org, key=f"bench.{backend}")
    source = DataSource.objects.create(
        organization=org,
        key=f"bench-{backend}",
        kind="sql",
        every=timedelta(hours=1),
        config={**config, "pulls": [{"kpi": kpi.key, "query": query}]},
    )
    started = time.perf_counter()
    run = data_source_pull(source=source)
    pull_seconds = time.perf_counter() - started
    assert not run.error, run.error
    assert Measurement.objects.filter(kpi=kpi).count() == ROWS
    return read_seconds, pull_seconds


def api_rate() -> float:
    org, keys, token = ingestion.build()
    payloads = ingestion.bodies(keys, timezone.now())
    connection.close()  # gunicorn's worker opens its own connections
    port = ingestion.free_port()
    server, worker = ingestion.serve(port, ingestion.subprocess_env())
    try:
        seconds, _ = ingestion.ingest(port, token, payloads, worker)
    finally:
        server.terminate()
        server.wait()
    return Measurement.objects.filter(organization=org).count() / seconds


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    directory = Path(tempfile.mkdtemp(prefix="steerco-bench-"))
    try:
        assert connection.vendor == "postgresql", "run the connectors bench with DATABASE_URL on PostgreSQL"
        org = ingestion.OrganizationFactory(slug="bench-pull")
        settings.PULL_ENV_GRANTS = {"bench-pull:BENCH_WAREHOUSE_DSN"}
        settings.PULL_FILE_GRANTS = {f"bench-pull:{directory}"}
        settings.PULL_MAX_ROWS = ROWS
        settings.PULL_STATEMENT_TIMEOUT = timedelta(minutes=5)
        data = rows()
        print(f"connectors, a pull of {ROWS:,} rows through the sql connector (read, check, store):")
        for backend in BACKENDS:
            try:
                with warehouse(backend, directory, postgres_url(), data, times=True) as found:
                    read_seconds, pull_seconds = pull(org, backend, found.url, found.table)
            except Unavailable as e:
                print(f"  {backend}: skipped ({e})")
                continue
            record("connectors", f"{backend}: read through the connector", ROWS / read_seconds, "rows/s")
            record("connectors", f"{backend}: whole pull (read, check, store)", ROWS / pull_seconds, "rows/s")
        rate = api_rate()
        record("connectors", "API ingestion on this machine, for comparison", rate, "measurements/s")
    finally:
        runner.teardown_databases(old)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
