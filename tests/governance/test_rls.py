"""Row-level security, the second wall: run as the runtime role (tests/conftest.py), a missing or wrong tenant
scope shows nothing of another organization and writes nothing into it, whatever the query."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.db import ProgrammingError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from psycopg import sql

from escalations.models import Workstream
from governance import tenancy
from governance.models import ApiToken, AuditEvent, Membership
from governance.rls import is_tenant_model, tenant_tables
from governance.services.api_tokens import api_token_digest
from scorecards.models import Kpi, Scorecard
from tests.conftest import RUNTIME_ROLE, WEB_ROLE, as_web_role
from tests.factories import KpiFactory
from tests.scorecards.evaluation.test_sweep_celery import subprocess_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
ROOT = Path(__file__).resolve().parents[2]

# Tables that hold no organization's rows: people and their logins, the organizations themselves (the tenant
# registry routing reads by slug), Django's and the libraries' own bookkeeping.
NOT_TENANT_OWNED = {
    "auth_group",
    "auth_group_permissions",
    "auth_permission",
    "axes_accessattempt",
    "axes_accessattemptexpiration",
    "axes_accessfailurelog",
    "axes_accesslog",
    "django_content_type",
    "django_migrations",
    "django_session",
    "governance_heartbeat",
    "governance_organization",
    "governance_user",
    "governance_user_groups",
    "governance_user_user_permissions",
    "guardian_groupobjectpermission",  # unused: KPIs and teams have direct-FK permission tables, walled below
    "guardian_userobjectpermission",
    "otp_static_staticdevice",  # a person's second factor (django-otp), like their login
    "otp_static_statictoken",
    "otp_totp_totpdevice",
}


@pytest.fixture(autouse=True)
def _needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("row-level security is PostgreSQL's")


def tenant_models() -> list:
    tables = tenant_tables(apps.get_models(include_auto_created=True))
    return [m for m in apps.get_models(include_auto_created=True) if m._meta.db_table in tables]


def test_the_suite_runs_as_a_role_that_row_level_security_binds():
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False, False)


def test_every_table_is_walled_in_or_named_as_holding_no_organizations_rows():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "  (SELECT count(*) FROM pg_policies p WHERE p.tablename = c.relname AND p.policyname = 'tenant' "
            "   AND p.qual IS NOT NULL AND p.with_check IS NOT NULL AND p.cmd = 'ALL') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
        tables = {name: (enabled, forced, policies) for name, enabled, forced, policies in cursor.fetchall()}
        # A partition (measurements are partitioned by month) is walled in like its parent: read through the parent
        # it follows the parent's policies, read by its own name its own.
        cursor.execute(
            "SELECT c.relname, i.inhparent::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE c.relkind IN ('r', 'p')"
        )
        partitions = dict(cursor.fetchall())
    assert partitions, "scorecards_measurement is partitioned"
    for partition, parent in partitions.items():
        assert tables.pop(partition) == tables[parent] == (True, True, 1), partition
    walled = {name for name, state in tables.items() if state == (True, True, 1)}
    expected = set(tenant_tables(apps.get_models(include_auto_created=True)))
    assert len(expected) > 40
    assert walled == expected, "a tenant table without RLS enabled, forced and its policy (see governance/rls.py)"
    assert set(tables) - walled == NOT_TENANT_OWNED, "classify the new table: governance.rls.protect_tables or here"
    # Every model with an organization is among them, and every link table that points at one.
    for model in apps.get_models(include_auto_created=True):
        if is_tenant_model(model):
            assert model._meta.db_table in walled


def test_without_a_scope_nothing_tenant_owned_is_visible(tenant, stranger_tenant):
    tenant.episode, tenant.review_session, tenant.dependency  # noqa: B018  (rows in the lazily made tables too)
    stocked = {m for m in tenant_models() if m._base_manager.exists()}
    assert len(stocked) >= 25
    with tenancy.scope():
        for model in stocked:
            assert not model._base_manager.exists(), model._meta.db_table
        with connection.cursor() as cursor:  # raw SQL is no way around it
            cursor.execute("SELECT count(*) FROM scorecards_kpi")
            assert cursor.fetchone() == (0,)


def test_an_organization_sees_only_its_own_rows(tenant, stranger_tenant):
    tenant.episode, stranger_tenant.episode  # noqa: B018
    mine = {m: m._base_manager.filter(organization=tenant.org).count() for m in tenant_models() if is_tenant_model(m)}
    links = Scorecard.kpis.through.objects.filter(scorecard__organization=tenant.org).count()
    assert links and Scorecard.kpis.through.objects.count() > links
    with tenancy.scope(organization=tenant.org.pk):
        for model, count in mine.items():
            assert model._base_manager.count() == count, model._meta.db_table
        # A link table shows only links between rows of the organization.
        assert Scorecard.kpis.through.objects.count() == links


def test_a_write_into_another_organization_fails(tenant, stranger_tenant):
    foreign = stranger_tenant.kpi
    with tenancy.scope(organization=tenant.org.pk):
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            Kpi.objects.create(organization=stranger_tenant.org, key="planted", name="Planted", owner=tenant.member)
        # Rows of another organization are not there to change or delete.
        assert Kpi.objects.filter(pk=foreign.pk).update(name="Renamed") == 0
        assert Membership.objects.filter(pk=stranger_tenant.member.pk).delete()[0] == 0
        # Moving a row out of the organization is a write into another one.
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            Kpi.objects.filter(pk=tenant.kpi.pk).update(organization=stranger_tenant.org)
        # A link to another organization's row is refused too.
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            Scorecard.kpis.through.objects.create(scorecard=tenant.scorecard, kpi_id=foreign.pk)
    assert Kpi.objects.get(pk=foreign.pk).name == foreign.name
    assert Kpi.objects.filter(key="planted").count() == 0


def test_a_user_sees_their_own_memberships_and_a_token_only_itself(tenant, stranger_tenant):
    both = KpiFactory(organization=stranger_tenant.org).owner  # someone in the other organization...
    Membership.objects.create(organization=tenant.org, user=both.user, role="member")  # ...and in this one
    with tenancy.scope(user=both.user.pk):
        assert set(Membership.objects.values_list("organization", flat=True)) == {tenant.org.pk, stranger_tenant.org.pk}
        assert not Kpi.objects.exists()
        assert Membership.objects.filter(user=both.user).update(role="admin") == 0  # reading is all
    with tenancy.scope(token=api_token_digest(tenant.token)):
        assert list(ApiToken.objects.values_list("pk", flat=True)) == [tenant.api_token.pk]
        assert not Membership.objects.exists()


def test_the_system_scope_is_asked_for_in_the_pinned_places_only():
    """Sweeps claim work across organizations and operators' commands see them all; anywhere else the scope is
    an organization's, a user's or a token's: web requests cannot enter it (test below). A new place must be
    argued for here, and run as the workers' role."""
    allowed = {
        "manage.py",  # operators' commands
        "escalations/tasks.py",  # the beat's sweeps (tenancy.for_sweep without an organization)
        "scorecards/tasks.py",
        "escalations/collaboration/tasks.py",  # the attachments' retention sweep
        "dependencies/tasks.py",  # the weekly hidden-dependency run, one task per organization
        "config/operations/collector.py",  # the workers' metrics endpoint: aggregate counts over every organization
        "config/operations/backups.py",  # manage.py backup/restore: pg_dump and pg_restore as the owner
    }
    found = set()
    for path in ROOT.glob("**/*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith((".venv/", "tests/", "node_modules/", "var/")) or relative == "governance/tenancy.py":
            continue
        if re.search(r"system=|for_sweep\(", path.read_text()):
            found.add(relative)
    assert found == allowed


def test_code_that_talks_to_psycopg_directly_does_it_in_the_scope():
    """A psycopg cursor of one's own bypasses Django's, and with it the backend that writes the scope into each
    transaction: connection.psycopg_cursor() is the way."""
    offenders = [
        path.relative_to(ROOT).as_posix()
        for app in ("config", "governance", "scorecards", "dependencies", "escalations")
        for path in (ROOT / app).glob("**/*.py")
        if re.search(r"psycopg\.(Client|Server)?Cursor\(|connection\.connection\b", path.read_text())
        and path.relative_to(ROOT).as_posix() != "governance/postgresql/base.py"
    ]
    assert offenders == []


def production(url: str) -> dict:
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": url,
        "SECRET_KEY": "x" * 40,
        "API_TOKEN_KEY": "y" * 40,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SECRETS_KEYS": Fernet.generate_key().decode(),
    }


def start_web(env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "import config.wsgi"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def start_worker(env: dict) -> subprocess.CompletedProcess:
    """A worker that refuses its role exits at once (one that accepts it would run: the caller must expect 1)."""
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=WARNING"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_production_web_and_workers_refuse_a_role_that_bypasses_row_level_security():
    superuser = production(subprocess_database_url().split("?")[0])  # the suite's own login
    web = start_web(superuser)
    assert web.returncode != 0
    assert "bypasses row-level security" in web.stderr
    worker = start_worker(superuser)
    assert worker.returncode == 1
    assert "Refusing to start" in worker.stderr and "bypasses row-level security" in worker.stderr


def test_production_web_starts_as_the_web_role_only_and_workers_as_theirs_only():
    workers_role = subprocess_database_url()  # the suite's runtime role is the workers' kind
    web_role = workers_role.replace(f"assume_role={RUNTIME_ROLE}", f"assume_role={WEB_ROLE}")
    started = start_web(production(web_role))
    assert started.returncode == 0, started.stderr
    refused = start_web(production(workers_role))
    assert refused.returncode != 0 and f"{RUNTIME_ROLE!r} is a member of steerco_sweeper" in refused.stderr
    worker = start_worker(production(web_role))
    assert worker.returncode == 1
    assert f"{WEB_ROLE!r} is no member of steerco_sweeper, so the sweeps would see no organization" in worker.stderr


def test_production_web_refuses_a_replica_that_bypasses_row_level_security():
    """Pages read from the replica (config/replica.py): its login is held to the web role's rules as well."""
    web_role = subprocess_database_url().replace(f"assume_role={RUNTIME_ROLE}", f"assume_role={WEB_ROLE}")
    started = start_web(production(web_role) | {"DATABASE_REPLICA_URL": web_role})
    assert started.returncode == 0, started.stderr
    superuser = subprocess_database_url().split("?")[0]
    refused = start_web(production(web_role) | {"DATABASE_REPLICA_URL": superuser})
    assert refused.returncode != 0
    assert "of the replica (DATABASE_REPLICA_URL) is a superuser or bypasses row-level security" in refused.stderr


def test_the_web_role_cannot_switch_on_the_system_scope(tenant, stranger_tenant):
    """A statement injected into a web request may write the settings; the scope stays its organization's."""
    with tenancy.scope(organization=tenant.org.pk), as_web_role(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('steerco.system', 'on', true)")
        cursor.execute("SELECT steerco_system(), organization_id FROM scorecards_kpi")
        assert {row for row in cursor.fetchall()} == {(False, tenant.org.pk)}
    with tenancy.scope(system=True), as_web_role():
        assert not Kpi.objects.exists()
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            Kpi.objects.create(organization=stranger_tenant.org, key="planted", name="Planted", owner=tenant.member)


def test_the_workers_role_sweeps_every_organization(tenant, stranger_tenant):
    tenant.episode, stranger_tenant.episode  # noqa: B018  (an open workstream in each)
    with tenancy.for_sweep(None):  # a beat's sweep
        assert Workstream.objects.count() == 2
        with as_web_role():
            assert Workstream.objects.count() == 0


def test_a_web_request_still_audits_a_probe_of_another_organizations_id(tenant, stranger_tenant, client):
    client.force_login(tenant.admin.user)
    with as_web_role():
        foreign = client.get(
            reverse("governance:team_detail", kwargs={"org_slug": "acme", "team_id": stranger_tenant.team.pk})
        )
        missing = client.get(reverse("governance:team_detail", kwargs={"org_slug": "acme", "team_id": 999999}))
    assert (foreign.status_code, missing.status_code) == (404, 404)
    probe = AuditEvent.objects.get(verb="security.foreign_id")
    assert probe.organization == tenant.org and probe.after["id"] == str(stranger_tenant.team.pk)


def test_a_web_request_still_records_a_failed_login_of_no_organization(tenant):
    with as_web_role():
        assert Client().post(reverse("login"), {"username": "nobody@nowhere.test", "password": "guess"}).status_code
    event = AuditEvent.objects.get(verb="security.login_failed")
    assert event.organization is None and event.after["username"] == "nobody@nowhere.test"
    with tenancy.scope(organization=tenant.org.pk):  # no organization's page shows it
        assert not AuditEvent.objects.filter(organization=tenant.org, verb="security.login_failed").exists()


def test_the_runtime_role_command_creates_a_login_role_for_rows_only():
    owner = subprocess_database_url().split("?")[0]  # the suite's own login, which owns the schema
    name = "steerco_test_command_role"
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": owner, "APP_PW": "s3cret"}

    def runtime_role(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "manage.py", "runtime_role", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    with psycopg.connect(owner, autocommit=True) as admin:
        try:
            for _ in range(2):  # a second run finds the role and grants again
                made = runtime_role(name, "--password-env", "APP_PW")
                assert made.returncode == 0, made.stderr
                assert made.stdout == (
                    f"{name} may read and write rows under row-level security, never in the system scope.\n"
                )
            system = "SELECT pg_has_role(%s, 'steerco_sweeper', 'MEMBER')"
            assert admin.execute(system, [name]).fetchone() == (False,)
            assert runtime_role(name, "--sweeps").stdout.endswith("in every organization's scope, for the sweeps.\n")
            assert admin.execute(system, [name]).fetchone() == (True,)
            assert runtime_role(name).returncode == 0  # the web role again: no longer a member
            assert admin.execute(system, [name]).fetchone() == (False,)
            role = admin.execute(
                "SELECT rolcanlogin, rolsuper, rolbypassrls, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s",
                [name],
            ).fetchone()
            assert role == (True, False, False, True)
            rights = admin.execute(
                "SELECT has_table_privilege(%(r)s, 'scorecards_kpi', 'SELECT, INSERT, UPDATE, DELETE'),"
                " has_table_privilege(%(r)s, 'scorecards_kpi', 'TRUNCATE'),"
                " has_schema_privilege(%(r)s, 'public', 'CREATE')",
                {"r": name},
            ).fetchone()
            assert rights == (True, False, False)
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}").format(sql.Identifier(name)))
    refused = runtime_role(connection.settings_dict["USER"])
    assert refused.returncode == 1 and "is a superuser or bypasses row-level security" in refused.stderr
    unset = runtime_role(name, "--password-env", "NO_SUCH_VARIABLE")
    assert unset.returncode == 1 and "NO_SUCH_VARIABLE is empty or not set." in unset.stderr


@pytest.mark.django_db(transaction=True)
def test_a_page_reads_in_one_transaction_and_a_refusal_is_still_recorded(tenant, stranger_tenant, client):
    """Each statement outside a transaction would cost BEGIN, set_config and COMMIT round trips: a GET shares one."""
    client.force_login(tenant.admin.user)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("scorecards:kpi_list", kwargs={"org_slug": tenant.org.slug})).status_code == 200
    sql = [query["sql"] for query in queries.captured_queries]
    assert (sql[0], sql[-1], sql.count("BEGIN"), sql.count("COMMIT")) == ("BEGIN", "COMMIT", 1, 1)
    assert len(sql) > 4  # the page's reads are inside it

    client.force_login(stranger_tenant.admin.user)
    assert client.get(reverse("scorecards:kpi_list", kwargs={"org_slug": tenant.org.slug})).status_code == 404
    assert AuditEvent.objects.filter(
        organization=tenant.org, verb="security.access_denied", actor=stranger_tenant.admin.user
    ).exists()


def _sent(trace: Path) -> list[str]:
    """The statements the client sent, from libpq's protocol trace (a simple Query or an extended Parse)."""
    return re.findall(r"\tF\t\d+\t(?:Query|Parse)\t (?:\"\" )?\"(.*)\"$", trace.read_text(), re.MULTILINE)


@pytest.mark.django_db(transaction=True)
def test_a_web_request_holds_the_statement_timeout_set_with_its_scope_in_one_round_trip(
    tenant, client, settings, tmp_path
):
    settings.WEB_STATEMENT_TIMEOUT = timedelta(seconds=7)
    client.force_login(tenant.admin.user)
    seen = []

    def show(execute, sql_, params, many, context):
        if not seen:
            with context["connection"].connection.cursor() as cursor:
                seen.append(cursor.execute("SHOW statement_timeout").fetchone()[0])
        return execute(sql_, params, many, context)

    connection.ensure_connection()
    with open(tmp_path / "trace", "w") as trace, CaptureQueriesContext(connection) as queries:
        connection.connection.pgconn.trace(trace.fileno())
        try:
            with connection.execute_wrapper(show):
                kpi_list = reverse("scorecards:kpi_list", kwargs={"org_slug": tenant.org.slug})
                assert client.get(kpi_list).status_code == 200
        finally:
            connection.connection.pgconn.untrace()
    assert seen == ["7s"]
    sent = _sent(tmp_path / "trace")
    assert len(sent) > len(queries.captured_queries)  # the trace holds what Django does not log too
    # No statement of its own: the timeout travels with every write of the scope.
    timeouts = [statement for statement in sent if "statement_timeout" in statement and "SHOW" not in statement]
    assert timeouts and all("set_config('steerco.organization'" in statement for statement in timeouts)
    assert len(timeouts) == sum("set_config(" in statement for statement in sent)
    with connection.cursor() as cursor:  # outside a request, the role's own
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"


@pytest.mark.django_db(transaction=True)
def test_a_slow_statement_in_a_web_request_is_stopped_with_a_503(tenant, client, settings):
    settings.WEB_STATEMENT_TIMEOUT = timedelta(milliseconds=300)

    def slow(execute, sql_, params, many, context):
        if "scorecards_kpi" in sql_:
            execute("SELECT pg_sleep(5)", None, False, context)
        return execute(sql_, params, many, context)

    client.force_login(tenant.admin.user)
    started = time.monotonic()
    with connection.execute_wrapper(slow):
        page = client.get(reverse("scorecards:kpi_list", kwargs={"org_slug": tenant.org.slug}))
        api = client.get("/api/v1/kpis", HTTP_AUTHORIZATION=f"Bearer {tenant.token}")
    assert time.monotonic() - started < 3
    assert page.status_code == 503 and b"This took too long" in page.content
    assert api.status_code == 503 and api.json()["errors"][0]["message"].startswith("The request took too long")
    with connection.cursor() as cursor:  # the connection is usable again, and a task's statement is not cut off
        cursor.execute("SELECT pg_sleep(0.5)")
