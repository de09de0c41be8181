"""`make bench` (part 7): what an encrypted organization secret costs a pull.

Two SQL sources of one organization pull the same query from the same local PostgreSQL database, one with its
address in a granted environment variable (dsn_env), the other in an organization secret (dsn_secret: a row read
under row-level security, then Fernet-decrypted). Their pulls alternate, REPEAT times each, as the runtime role in
the organization's scope as the pull task runs; the report gives both medians and their ratio, then the two parts
of the difference on their own: the secret's row read (one indexed SELECT in the transaction of the pull's other
reads) and its decryption. The first is a database round trip, as large as the machine is busy; the second is
what encryption adds.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from governance import tenancy  # noqa: E402
from governance.models import Secret  # noqa: E402
from governance.rls import runtime_role_ensure  # noqa: E402
from governance.secrets import decrypt  # noqa: E402
from governance.selectors import secret_value  # noqa: E402
from governance.services.secrets import secret_set  # noqa: E402
from scorecards.ingestion.pulls import data_source_pull  # noqa: E402
from scorecards.models import DataSource  # noqa: E402
from tests.factories import KpiFactory, OrganizationFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

REPEAT = int(os.environ.get("BENCH_SECRET_PULLS", "300"))
RUNTIME_ROLE = "steerco_bench_runtime"
QUERY = "select now() as at, 1 as value where cast(:since as timestamptz) is null"  # connects, queries, stores nothing


def dsn() -> str:
    db = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
    )


def build():
    org = OrganizationFactory(slug="bench-secrets")
    kpi = KpiFactory(organization=org, key="bench.pulled")
    os.environ["BENCH_WAREHOUSE_DSN"] = dsn()
    settings.PULL_ENV_GRANTS = {f"{org.slug}:BENCH_WAREHOUSE_DSN"}
    with tenancy.scope(organization=org.pk):
        secret_set(org=org, actor=None, name="warehouse_dsn", value=dsn())
    pulls = [{"kpi": kpi.key, "query": QUERY}]
    sources = {
        name: DataSource.objects.create(
            organization=org, key=name, kind="sql", every=timedelta(hours=1), config={field: ref, "pulls": pulls}
        )
        for name, field, ref in [("env", "dsn_env", "BENCH_WAREHOUSE_DSN"), ("secret", "dsn_secret", "warehouse_dsn")]
    }
    return org, sources


def timed(work) -> float:
    """The median seconds of REPEAT runs of `work`."""
    seconds = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        assert connection.vendor == "postgresql", "run the secrets bench with DATABASE_URL on PostgreSQL"
        with tenancy.scope(system=True):
            org, sources = build()
        with connection.cursor() as cursor:
            runtime_role_ensure(cursor, RUNTIME_ROLE, login=False)
            cursor.execute(f"SET ROLE {RUNTIME_ROLE}")
        seconds: dict[str, list[float]] = {"env": [], "secret": []}
        with tenancy.scope(organization=org.pk):
            for i in range(REPEAT + 10):
                # Alternating, and each order half the time, so that drift and warm-up fall on both alike.
                for name in ("env", "secret") if i % 2 else ("secret", "env"):
                    started = time.perf_counter()
                    run = data_source_pull(source=sources[name])
                    elapsed = time.perf_counter() - started
                    assert run.error == "", run.error
                    if i >= 10:  # the first rounds warm up connections and caches
                        seconds[name].append(elapsed)
            with transaction.atomic():  # as in the pull: inside the transaction of its other reads
                read = timed(lambda: secret_value(org=org, name="warehouse_dsn"))
            ciphertext = Secret.objects.filter(organization=org).values_list("ciphertext", flat=True).get()
            decryption = timed(lambda: decrypt(ciphertext, name="warehouse_dsn"))
        env, secret = statistics.median(seconds["env"]), statistics.median(seconds["secret"])
        print(f"secrets, {REPEAT} pulls of each source (local PostgreSQL, runtime role, organization scope):")
        record("secrets", "pull, address from a granted environment variable, median", env * 1000, "ms")
        record("secrets", "pull, address from an encrypted organization secret, median", secret * 1000, "ms")
        ratio = secret / env
        record("secrets", "ratio secret / environment", ratio, "x", goal="<= 1.05x", met=ratio <= 1.05)
        record("secrets", "the secret's row read and decryption (one SELECT), median", read * 1000, "ms")
        share = decryption / env
        record(
            "secrets",
            "of which the decryption, median",
            decryption * 1e6,
            "µs",
            goal="< 0.1% of a pull",
            met=share < 0.001,
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()
