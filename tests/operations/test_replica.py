"""Page reads from a replica (config/replica.py): a page's queries go to the `replica` alias, a write and the pages
right after it to the primary. The replica here is the test database itself under a second alias (a mirror, as
Django's tests make of a replica): the tests prove where each query goes, not streaming replication."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, router, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from config.replica import REPLICA, STICKY_COOKIE, page_read
from governance import tenancy
from scorecards.models import Kpi, Measurement
from scorecards.selectors import fetch_series


def test_a_page_read_is_routed_to_the_replica_and_everything_else_to_the_primary():
    assert Kpi.objects.all().db == DEFAULT_DB_ALIAS  # a task, a command: no page read
    with page_read():
        assert Kpi.objects.all().db == REPLICA
        assert router.db_for_write(Kpi) == DEFAULT_DB_ALIAS
        # A row read from the replica is saved to the primary, not back to where it came from.
        assert router.db_for_write(Kpi, instance=Kpi(pk=1)) == DEFAULT_DB_ALIAS


def test_database_replica_url_adds_a_replica_under_row_level_security_that_is_never_migrated():
    code = (
        "import django; django.setup(); from django.conf import settings; from django.db import router; "
        "r = settings.DATABASES['replica']; "
        "print(r['ENGINE'], r['HOST'], r['TEST']['MIRROR'], r['DISABLE_SERVER_SIDE_CURSORS'], "
        "router.allow_migrate('replica', 'scorecards'))"
    )
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": "postgres://steerco@primary.internal/steerco",
        "DATABASE_REPLICA_URL": "postgres://steerco_app@replica.internal/steerco",
        "DATABASE_POOLED": "true",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["governance.postgresql", "replica.internal", "default", "True", "False"]


def test_without_a_replica_pages_read_the_primary_and_no_cookie_is_set(tenant):
    assert REPLICA not in settings.DATABASES
    client = tenant.client(tenant.member)
    with CaptureQueriesContext(connection) as primary:
        assert client.get(reverse("scorecards:okr_tree", args=[tenant.org.slug])).status_code == 200
    assert any("scorecards_keyresult" in q["sql"] for q in primary.captured_queries)
    url = reverse("scorecards:key_result_check_in", args=[tenant.org.slug, tenant.key_result.pk])
    assert STICKY_COOKIE not in client.post(url, {"value": 3}).cookies


@pytest.fixture(scope="class")
def replica(django_db_setup, django_db_blocker) -> Iterator[None]:
    """DATABASE_REPLICA_URL set to the test database; class-scoped, so the alias exists before the test case that
    allows queries to it is set up."""
    if connection.vendor != "postgresql":
        pytest.skip("the replica is PostgreSQL's streaming replication")
    mirror = copy.deepcopy(connection.settings_dict)
    mirror["TEST"]["MIRROR"] = DEFAULT_DB_ALIAS
    connections.settings[REPLICA] = mirror
    assert REPLICA in settings.DATABASES  # the same dictionary: the middleware sees the replica too
    yield
    connections[REPLICA].close()
    del connections[REPLICA]
    del connections.settings[REPLICA]


@pytest.mark.postgres
@pytest.mark.usefixtures("replica")
@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])
class TestWithAReplica:
    def test_pages_read_the_replica_until_the_browser_writes(self, tenant):
        client = tenant.client(tenant.member)
        page = reverse("scorecards:okr_tree", args=[tenant.org.slug])
        check_in = reverse("scorecards:key_result_check_in", args=[tenant.org.slug, tenant.key_result.pk])

        def key_result_reads(request) -> dict[str, int]:
            """Which database read the key results while the request ran."""
            with CaptureQueriesContext(connection) as primary, CaptureQueriesContext(connections[REPLICA]) as replica:
                response = request()
            assert response.status_code in (200, 302)
            if response.status_code == 200:  # in the member's scope on either database (row-level security)
                assert tenant.key_result.title in response.content.decode()
            return {
                alias: sum("scorecards_keyresult" in q["sql"] for q in queries.captured_queries)
                for alias, queries in [(DEFAULT_DB_ALIAS, primary), (REPLICA, replica)]
            }

        page_reads = key_result_reads(lambda: client.get(page))
        assert page_reads[REPLICA] and not page_reads[DEFAULT_DB_ALIAS]

        write = key_result_reads(lambda: client.post(check_in, {"value": 3}))
        assert write[DEFAULT_DB_ALIAS] and not write[REPLICA]
        assert client.cookies[STICKY_COOKIE]["max-age"] == settings.REPLICA_STICKY_SECONDS

        # Right after the write the page reads the primary, which has it whatever the replica's lag.
        after = key_result_reads(lambda: client.get(page))
        assert after[DEFAULT_DB_ALIAS] and not after[REPLICA]

        del client.cookies[STICKY_COOKIE]  # the window passed: the browser dropped the cookie
        later = key_result_reads(lambda: client.get(page))
        assert later[REPLICA] and not later[DEFAULT_DB_ALIAS]

    def test_a_pages_measurement_series_is_read_from_the_replica(self, tenant):
        at = timezone.now() - timedelta(hours=1)
        Measurement.objects.create(organization=tenant.org, kpi=tenant.kpi, at=at, value=5)
        connection.close()
        with page_read(), tenancy.scope(organization=tenant.org.pk):
            series = fetch_series([tenant.kpi.pk], at - timedelta(days=1), timezone.now())
        assert series == {tenant.kpi.pk: [(at, 5.0)]}
        assert connections[REPLICA].connection is not None and connection.connection is None

    def test_reads_inside_a_transaction_stay_on_the_primary(self):
        with page_read():
            assert Kpi.objects.all().db == REPLICA
            with transaction.atomic():
                assert Kpi.objects.all().db == DEFAULT_DB_ALIAS  # a read that may decide the write after it
