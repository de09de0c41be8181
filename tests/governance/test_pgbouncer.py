"""Behind a real PgBouncer in transaction mode (Debian's package, as production runs it): the tenant scope lives in one
transaction only, so clients that take turns on one server connection never see each other's rows.

The pool holds a single server connection, so every client's transactions run on the same PostgreSQL backend; the
clients are threads with Django connections of their own, as a web process's threads are.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.db import connection, connections, transaction
from django.db.utils import load_backend

from governance import tenancy
from governance.rls import runtime_role_ensure
from scorecards.models import Kpi
from tests.factories import KpiFactory, OrganizationFactory

pytestmark = [pytest.mark.postgres]
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
POOLED = "pooled"
# A login role like the web's (no system scope): PgBouncer's clients log in as it, since a session's SET ROLE
# (Django's assume_role, which the rest of the suite uses) would stay behind on the shared server connection.
ROLE = "steerco_test_pooled"


def _owner() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"], dbname=db["NAME"]
    )


@pytest.fixture(scope="module")
def pgbouncer(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[int]:
    """PgBouncer on a free local port, in transaction mode, with one server connection for all its clients."""
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer pools PostgreSQL connections")
    if not os.path.exists(PGBOUNCER):
        pytest.skip("pgbouncer is not installed (.ci/run installs it)")
    with _owner() as owner, owner.cursor() as cursor:
        runtime_role_ensure(cursor, ROLE)
    db = connection.settings_dict
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tmp_path_factory.mktemp("pgbouncer")
    (directory / "users.txt").write_text(f'"{ROLE}" ""\n"{db["USER"]}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "pool_mode = transaction\ndefault_pool_size = 1\nreserve_pool_size = 0\n"
        # The server's own authentication (trust on 127.0.0.1 in CI) stands: this PgBouncer only listens locally.
        f"auth_type = trust\nauth_file = {directory / 'users.txt'}\nadmin_users = {db['USER']}\n"
        # As deploy/kubernetes/base/pgbouncer.ini: libpq's startup options are not PgBouncer's to track.
        "ignore_startup_parameters = extra_float_digits,options\nserver_reset_query =\n"
    )
    # PgBouncer refuses to run as root; it reads its files first, then drops to `nobody`.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    log = open(directory / "pgbouncer.log", "wb")  # noqa: SIM115  (closed below, after the process)
    process = subprocess.Popen([PGBOUNCER, *user, str(directory / "pgbouncer.ini")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(host="127.0.0.1", port=port, user=ROLE, dbname=db["NAME"]).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((directory / "pgbouncer.log").read_text()) from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def pooled(pgbouncer, transactional_db) -> dict:
    """The test database through PgBouncer, with the settings DATABASE_POOLED makes. Its data must be committed
    (transactional_db) for PgBouncer's clients to see it."""
    settings = copy.deepcopy(connection.settings_dict)
    settings["OPTIONS"].pop("assume_role", None)
    settings.update(HOST="127.0.0.1", PORT=pgbouncer, USER=ROLE, PASSWORD="", DISABLE_SERVER_SIDE_CURSORS=True)
    return settings


def in_threads(settings: dict, *work: Callable[[], None]) -> None:
    """Runs each callable in a thread of its own, with a `pooled` connection (a PgBouncer client) and a tenant scope
    of its own, and re-raises the first failure."""
    failures = []

    def run(job):
        # A connection made by hand rather than a configured alias, which the test case would refuse in a thread.
        connections[POOLED] = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, POOLED)
        try:
            job()
        except BaseException as failure:  # noqa: BLE001  (handed to the test's thread)
            failures.append(failure)
        finally:
            connections[POOLED].close()
            del connections[POOLED]

    threads = [threading.Thread(target=run, args=[job]) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if failures:
        raise failures[0]


def _fetch(sql: str, params=()) -> list[tuple]:
    with connections[POOLED].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_two_organizations_interleaved_on_one_server_connection_never_see_each_others_rows(pooled):
    orgs = [OrganizationFactory(), OrganizationFactory()]
    for org in orgs:
        KpiFactory.create_batch(2, organization=org)
    turns = threading.Barrier(2)
    seen: dict[int, set[int]] = {org.pk: set() for org in orgs}
    backends: set[int] = set()
    writes: list[tuple[int, int]] = []  # (transaction id, organization) of each client's writing transaction

    def request(org_id: int) -> Callable[[], None]:
        def run():
            for _ in range(5):
                turns.wait(10)  # both clients queue for the one server connection at once: their turns interleave
                with tenancy.scope(organization=org_id):
                    # A statement of its own (a transaction of its own), then a transaction of several.
                    for organization, backend in _fetch("SELECT organization_id, pg_backend_pid() FROM scorecards_kpi"):
                        seen[org_id].add(organization)
                        backends.add(backend)
                    with transaction.atomic(using=POOLED):
                        for organization, xid in _fetch(
                            "UPDATE scorecards_kpi SET name = name RETURNING organization_id, txid_current()"
                        ):
                            seen[org_id].add(organization)
                            writes.append((xid, org_id))
                        seen[org_id].update(
                            Kpi._base_manager.using(POOLED).values_list("organization_id", flat=True).iterator(2)
                        )
                        # psycopg's own cursor, as the sweep and the scorecard read measurements, more often than
                        # psycopg's threshold for preparing a statement.
                        for _ in range(8):
                            with connections[POOLED].psycopg_cursor() as cursor:
                                cursor.execute("SELECT organization_id FROM scorecards_kpi", binary=True)
                                seen[org_id].update(o for (o,) in cursor.fetchall())

        return run

    in_threads(pooled, *(request(org.pk) for org in orgs))

    assert seen == {org.pk: {org.pk} for org in orgs}
    assert len(backends) == 1, "both clients ran on one PostgreSQL backend"
    turns_taken = [org_id for _, org_id in sorted(set(writes))]
    assert sum(a != b for a, b in zip(turns_taken, turns_taken[1:], strict=False)) >= 5, "their turns interleaved"
    # Nothing a client left on the shared backend for the next: no prepared statement, no open cursor.
    left: list[tuple] = []
    in_threads(
        pooled,
        lambda: left.extend(
            _fetch(
                "SELECT (SELECT count(*) FROM pg_prepared_statements), (SELECT count(*) FROM pg_cursors), "
                "pg_backend_pid()"
            )
        ),
    )
    assert left == [(0, 0, *backends)]


def test_a_scope_never_outlives_its_transaction_on_the_shared_server_connection(pooled):
    org = OrganizationFactory()
    KpiFactory(organization=org)
    found: list[tuple] = []

    def organization():
        with tenancy.scope(organization=org.pk), transaction.atomic(using=POOLED):
            found.extend(_fetch("SELECT count(*), pg_backend_pid() FROM scorecards_kpi"))

    def no_scope():
        # The next client on the same backend, with no scope: its statement runs in no transaction of ours.
        found.extend(
            _fetch(
                "SELECT count(*), coalesce(current_setting('steerco.organization', true), ''), pg_backend_pid() "
                "FROM scorecards_kpi"
            )
        )

    in_threads(pooled, organization)
    in_threads(pooled, no_scope)

    (mine, backend), (theirs, setting, same) = found
    assert backend == same
    assert mine == 1
    assert (theirs, setting) == (0, "")
