"""The pull connectors on their own: a local HTTP server for http_json, a real PostgreSQL database for sql."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from governance.models import Organization
from scorecards.connectors.base import PullError, Unreadable
from scorecards.connectors.http_json import HttpJsonConnector
from scorecards.connectors.sql import SqlConnector

SINCE = datetime(2026, 11, 28, 8, tzinfo=UTC)
SECRET = "hunter2-not-for-your-eyes"
# Environment variables only: organization secrets are read from the database (tests/governance/test_secrets.py).
ACME = Organization(slug="acme")


@pytest.fixture
def granted(settings):
    """The operator grants acme these variables of the workers' environment."""
    settings.PULL_ENV_GRANTS = {"acme:CRM_TOKEN", "acme:CRM_TENANT", "acme:WAREHOUSE_DSN"}


def http_rows(config: dict, pull: dict, since: datetime = SINCE) -> list:
    with HttpJsonConnector(config, org=ACME) as connector:
        return connector.rows(pull, since)


def http_error(config: dict, pull: dict | None = None) -> str:
    with pytest.raises(PullError) as caught:
        http_rows(config, pull or {"kpi": "ops.throughput", "at": "at", "value": "value"})
    return str(caught.value)


# --- http_json ------------------------------------------------------------------------------------


def test_it_reads_the_mapped_fields_from_the_list_at_the_items_path(json_server):
    json_server.answer(
        "/kpis",
        {"data": {"rows": [{"day": "2026-11-28T08:00:00Z", "n": 5, "other": 1}, {"day": "2026-11-29", "n": 6.5}]}},
    )
    rows = http_rows(
        {"url": json_server.url("/kpis")}, {"kpi": "ops.throughput", "items": "data.rows", "at": "day", "value": "n"}
    )
    assert rows == [("2026-11-28T08:00:00Z", 5), ("2026-11-29", 6.5)]


def test_without_items_the_answer_itself_is_the_list_and_a_non_object_is_unreadable(json_server):
    json_server.answer("/kpis", [{"at": "2026-11-28T08:00:00Z", "value": 1}, 7, {"at": "x"}])
    rows = http_rows({"url": json_server.url("/kpis")}, {"kpi": "ops.throughput", "at": "at", "value": "value"})
    # A missing field reads as null: the Checker then says what is wrong with it, row by row.
    assert rows == [("2026-11-28T08:00:00Z", 1), Unreadable("is not a JSON object"), ("x", None)]


def test_a_missing_items_path_is_a_clear_error(json_server):
    json_server.answer("/kpis", {"data": {"rows": []}})
    message = http_error(
        {"url": json_server.url("/kpis")}, {"kpi": "ops.throughput", "items": "data.items", "at": "a", "value": "v"}
    )
    assert message == 'the answer for ops.throughput has no "data.items" (nothing at "items")'


def test_since_goes_into_the_address_url_encoded(json_server):
    json_server.answer("/kpis", [])
    http_rows({"url": json_server.url("/kpis?since={since}&x=1")}, {"kpi": "k", "at": "at", "value": "value"})
    assert json_server.requests[0][0] == "/kpis?since=2026-11-28T08%3A00%3A00%2B00%3A00&x=1"


def test_pulls_asking_for_the_same_address_share_one_request(json_server):
    json_server.answer("/kpis", {"a": [{"t": "2026-11-28T08:00:00Z", "v": 1}], "b": []})
    with HttpJsonConnector({"url": json_server.url("/kpis")}, org=ACME) as connector:
        connector.rows({"kpi": "a", "items": "a", "at": "t", "value": "v"}, SINCE)
        connector.rows({"kpi": "b", "items": "b", "at": "t", "value": "v"}, SINCE)
    assert len(json_server.requests) == 1


def test_headers_come_from_the_variables_the_operator_granted(json_server, monkeypatch, granted):
    monkeypatch.setenv("CRM_TOKEN", f"Bearer {SECRET}")
    monkeypatch.setenv("CRM_TENANT", "acme")
    json_server.answer("/kpis", [])
    config = {"url": json_server.url("/kpis"), "headers_env": {"Authorization": "CRM_TOKEN", "X-Tenant": "CRM_TENANT"}}
    http_rows(config, {"kpi": "k", "at": "at", "value": "value"})
    headers = json_server.requests[0][1]
    assert (headers["Authorization"], headers["X-Tenant"]) == (f"Bearer {SECRET}", "acme")


def test_an_unset_header_variable_is_a_clear_error(json_server, monkeypatch, granted):
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    message = http_error({"url": json_server.url("/kpis"), "headers_env": {"Authorization": "CRM_TOKEN"}})
    assert message == "the environment variable CRM_TOKEN (the Authorization header) is not set for the workers"
    assert json_server.requests == []


def test_a_slow_server_times_out(json_server, settings):
    settings.PULL_HTTP_READ_TIMEOUT = timedelta(milliseconds=300)
    json_server.answer("/slow", [], delay=1.5)
    assert http_error({"url": json_server.url("/slow")}) == "127.0.0.1 did not answer within 0.3 s"


@pytest.mark.parametrize("declare_length", [True, False])
def test_an_answer_over_the_size_limit_is_refused(json_server, settings, declare_length):
    settings.PULL_HTTP_MAX_BYTES = 1000
    json_server.answer("/big", [{"at": "2026-11-28T08:00:00Z", "value": n} for n in range(200)])
    json_server.answers["/big"].declare_length = declare_length
    assert (
        http_error({"url": json_server.url("/big")})
        == "the answer from 127.0.0.1 is larger than the limit of 1,000 bytes"
    )


def test_an_answer_that_is_not_json_is_an_error(json_server):
    json_server.answer("/page", body=b"<html>Maintenance</html>", content_type="text/html; charset=utf-8")
    assert http_error({"url": json_server.url("/page")}) == "the answer from 127.0.0.1 is not JSON (text/html)"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, "HTTP 500 Internal Server Error"), (401, "HTTP 401 Unauthorized"), (302, "HTTP 302 Found")],
)
def test_an_answer_other_than_2xx_is_an_error_and_redirects_are_not_followed(json_server, status, expected):
    json_server.answer("/kpis", {"error": "nope"}, status=status)
    assert http_error({"url": json_server.url("/kpis")}) == f"127.0.0.1 answered {expected}"


def test_an_unreachable_server_is_an_error_without_the_header_values(monkeypatch, settings, granted):
    settings.PULL_ALLOW_PRIVATE_NETWORKS = True
    monkeypatch.setenv("CRM_TOKEN", SECRET)
    message = http_error({"url": "http://127.0.0.1:1/kpis", "headers_env": {"Authorization": "CRM_TOKEN"}})
    assert message.startswith("could not get an answer from 127.0.0.1: ") and SECRET not in message


def test_an_address_inside_our_network_is_refused_unless_allowed(json_server, settings):
    json_server.answer("/kpis", [{"at": "2026-11-28T08:00:00Z", "value": 1}])
    settings.PULL_ALLOW_PRIVATE_NETWORKS = False
    assert http_error({"url": json_server.url("/kpis")}) == (
        "could not get an answer from 127.0.0.1: 127.0.0.1 resolves to 127.0.0.1, a private or local address "
        "(PULL_ALLOW_PRIVATE_NETWORKS is off)"
    )
    assert json_server.requests == []


def test_more_items_than_the_row_cap_are_refused(json_server, settings):
    settings.PULL_MAX_ROWS = 3
    json_server.answer("/kpis", [{"at": "2026-11-28T08:00:00Z", "value": n} for n in range(4)])
    assert http_error({"url": json_server.url("/kpis")}).startswith("more than 3 rows in one pull")


# --- sql ------------------------------------------------------------------------------------------


def test_an_unset_dsn_variable_is_a_clear_error(monkeypatch, granted):
    monkeypatch.delenv("WAREHOUSE_DSN", raising=False)
    with pytest.raises(PullError, match=r"^the environment variable WAREHOUSE_DSN \(the database address\) is not set"):
        SqlConnector({"dsn_env": "WAREHOUSE_DSN"}, org=ACME).__enter__()


@pytest.mark.parametrize(
    "dsn",
    [f"postgres://pull:{SECRET}@127.0.0.1:1/warehouse", SECRET, f"host=127.0.0.1 port=1 password={SECRET}"],
)
def test_connection_errors_never_repeat_the_dsn_or_its_password(monkeypatch, granted, dsn):
    monkeypatch.setenv("WAREHOUSE_DSN", dsn)
    with pytest.raises(PullError) as caught:
        SqlConnector({"dsn_env": "WAREHOUSE_DSN"}, org=ACME).__enter__()
    message = str(caught.value)
    assert message.startswith("could not connect to the database of WAREHOUSE_DSN: ")
    assert SECRET not in message


only_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="the sql connector reads PostgreSQL")


@pytest.fixture
def warehouse(db, monkeypatch, granted):
    """A throwaway schema in the test database with a table and a function that writes, reached through a DSN
    in WAREHOUSE_DSN by the connector's own connection; dropped afterwards."""
    settings = connection.settings_dict
    dsn = psycopg.conninfo.make_conninfo(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"] or None,
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
    )
    schema = f"pulls_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        admin.execute(sql.SQL("CREATE TABLE {}.daily (day date, turnover numeric)").format(sql.Identifier(schema)))
        admin.execute(
            sql.SQL(
                "CREATE FUNCTION {0}.bump() RETURNS int LANGUAGE sql AS "
                "$$ INSERT INTO {0}.daily VALUES (current_date, 1) RETURNING 1 $$"
            ).format(sql.Identifier(schema))
        )
        admin.execute(
            sql.SQL("INSERT INTO {}.daily VALUES ('2026-11-27', 4.2), ('2026-11-28', 4.5), ('2026-11-29', 4.1)").format(
                sql.Identifier(schema)
            )
        )
    monkeypatch.setenv("WAREHOUSE_DSN", dsn)
    yield schema
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def sql_rows(query: str, since: datetime = SINCE) -> list:
    with SqlConnector({"dsn_env": "WAREHOUSE_DSN"}, org=ACME) as connector:
        return connector.rows({"kpi": "ops.throughput", "query": query}, since)


def sql_error(query: str) -> str:
    with pytest.raises(PullError) as caught:
        sql_rows(query)
    return str(caught.value)


@pytest.mark.postgres
@only_postgres
def test_it_reads_at_and_value_after_since_with_numbers_as_floats(warehouse):
    rows = sql_rows(f"select turnover as value, day as at from {warehouse}.daily where day > %(since)s order by day")
    # since is 2026-11-28 08:00 UTC: the 28th (midnight) is not after it
    assert rows == [(date(2026, 11, 29), 4.1)]
    assert isinstance(rows[0][1], float) and not isinstance(rows[0][1], Decimal)


@pytest.mark.postgres
@only_postgres
def test_a_query_that_writes_fails_in_the_read_only_transaction(warehouse):
    message = sql_error(f"select now() as at, {warehouse}.bump() as value")
    assert message == "the query for ops.throughput failed: cannot execute INSERT in a read-only transaction"
    assert len(sql_rows(f"select day as at, turnover as value from {warehouse}.daily")) == 3


@pytest.mark.postgres
@only_postgres
def test_a_query_cannot_run_a_second_statement(warehouse):
    message = sql_error(f"select now() as at, 1 as value; delete from {warehouse}.daily")
    assert message.startswith("the query for ops.throughput failed: ")
    assert len(sql_rows(f"select day as at, turnover as value from {warehouse}.daily")) == 3


@pytest.mark.postgres
@only_postgres
def test_a_slow_query_is_cancelled_by_the_statement_timeout(warehouse, settings):
    settings.PULL_STATEMENT_TIMEOUT = timedelta(milliseconds=200)
    message = sql_error("select now() as at, 1 as value from pg_sleep(5)")
    assert message == "the query for ops.throughput ran longer than 0.2 s and was cancelled"


@pytest.mark.postgres
@only_postgres
def test_more_rows_than_the_cap_are_refused(warehouse, settings):
    settings.PULL_MAX_ROWS = 5
    message = sql_error("select now() as at, n as value from generate_series(1, 1000000) n")
    assert message == "more than 5 rows in one pull; narrow it to the new rows (since)"


@pytest.mark.postgres
@only_postgres
def test_the_query_must_name_its_columns_at_and_value(warehouse):
    message = sql_error(f"select day, turnover from {warehouse}.daily")
    assert (
        message == 'the query for ops.throughput must return columns named "at" and "value" (it returns day, turnover)'
    )


# --- which variables a source may read ------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["DATABASE_URL", "SECRET_KEY", "API_TOKEN_KEY", "WEBHOOK_KEY", "SECRETS_KEYS", "DJANGO_SETTINGS_MODULE"]
)
def test_a_source_never_reads_steercos_own_settings_even_if_granted(monkeypatch, settings, name):
    settings.PULL_ENV_GRANTS = {f"acme:{name}"}
    monkeypatch.setenv(name, SECRET)
    with pytest.raises(PullError) as caught:
        SqlConnector({"dsn_env": name}, org=ACME).__enter__()
    assert (
        str(caught.value)
        == f"the environment variable {name} is one of Steerco's own settings; a source never reads it"
    )


def test_an_organization_reads_only_the_variables_granted_to_it(json_server, monkeypatch, settings):
    """Without a grant no variable is readable: one organization's admin cannot name another's warehouse DSN."""
    assert not settings.PULL_ENV_GRANTS  # the default grants none
    settings.PULL_ENV_GRANTS = {"acme:CRM_TOKEN", "globex:GLOBEX_TOKEN"}
    monkeypatch.setenv("CRM_TOKEN", "acme-token")
    monkeypatch.setenv("GLOBEX_TOKEN", SECRET)
    json_server.answer("/kpis", [])
    pull = {"kpi": "k", "at": "at", "value": "value"}
    with HttpJsonConnector({"url": json_server.url("/kpis"), "headers_env": {"X-Key": "CRM_TOKEN"}}, org=ACME) as c:
        assert c.rows(pull, SINCE) == []
    with pytest.raises(PullError) as caught:
        HttpJsonConnector(
            {"url": json_server.url("/kpis"), "headers_env": {"X-Key": "GLOBEX_TOKEN"}}, org=ACME
        ).__enter__()
    assert str(caught.value) == (
        "the environment variable GLOBEX_TOKEN is not granted to acme: store the value as an organization secret "
        "(Administration → Secrets) and name it instead"
    )
    assert [headers.get("X-Key") for _, headers in json_server.requests] == ["acme-token"]
