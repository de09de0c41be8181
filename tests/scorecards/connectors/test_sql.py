"""The sql connector: the same cases on real PostgreSQL, MariaDB, SQLite and DuckDB databases, and the statement
compiled by the dialects whose servers are not reachable here (Snowflake, BigQuery, SQL Server)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from django.db import connection

from governance.models import Organization
from scorecards.connectors.base import PullError
from scorecards.connectors.sql import DIALECTS, SqlConnector, since_value, statement
from tests.scorecards.connectors.warehouses import BACKENDS, Unavailable, warehouse

SINCE = datetime(2026, 11, 28, 8, tzinfo=UTC)
SECRET = "hunter2-not-for-your-eyes"
ACME = Organization(slug="acme")
ROWS = [("2026-11-27", 4.2), ("2026-11-28", 4.5), ("2026-11-29", 4.1)]

# A query that runs for many seconds on each database, to meet the statement timeout.
SLOW = {
    "postgresql": "select now() as at, 1 as value from pg_sleep(5)",
    "mariadb": "select now() as at, count(*) as value from seq_1_to_1000000 a, seq_1_to_1000000 b",
    "sqlite": "with recursive n(i) as (select 1 union all select i + 1 from n) select 1 as at, max(i) as value from n",
    "duckdb": "select 1 as at, count(*) as value from range(100000000000) a",
}


def postgres_url() -> str | None:
    if connection.vendor != "postgresql":
        return None
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    return f"postgresql://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture(params=BACKENDS)
def source(request, db, tmp_path, monkeypatch, settings):
    """The three-row `daily` table in each database, its URL in the granted variable WAREHOUSE_DSN."""
    settings.PULL_ENV_GRANTS = {"acme:WAREHOUSE_DSN"}
    settings.PULL_FILE_GRANTS = {f"acme:{tmp_path}"}
    try:
        with warehouse(request.param, tmp_path, postgres_url(), ROWS) as found:
            monkeypatch.setenv("WAREHOUSE_DSN", found.url)
            yield found
    except Unavailable as e:
        pytest.skip(str(e))


def sql_rows(query: str, since: datetime = SINCE) -> list:
    with SqlConnector({"dsn_env": "WAREHOUSE_DSN"}, org=ACME) as connector:
        return connector.rows({"kpi": "ops.throughput", "query": query}, since)


def sql_error(query: str) -> str:
    with pytest.raises(PullError) as caught:
        sql_rows(query)
    return str(caught.value)


# --- the same cases on every database --------------------------------------------------------------


def test_it_reads_at_and_value_after_since_with_numbers_as_floats(source):
    rows = sql_rows(f"select turnover as value, day as at from {source.table} where day > :since order by day")
    # since is 2026-11-28 08:00 UTC: the 28th (midnight) is not after it. SQLite keeps dates as text.
    assert [(str(at), value) for at, value in rows] == [("2026-11-29", 4.1)]
    assert isinstance(rows[0][1], float) and not isinstance(rows[0][1], Decimal)


def test_a_query_written_for_the_postgresql_only_connector_still_reads(source):
    rows = sql_rows(
        f"select day as at, turnover as value from {source.table} where day > %(since)s and '5%%' <> '' order by day"
    )
    assert [str(at) for at, _ in rows] == ["2026-11-29"]


def test_a_query_that_writes_fails_in_the_read_only_transaction(source):
    message = sql_error(f"insert into {source.table} (day, turnover) values ('2026-12-01', 1)")
    assert message.startswith("the query for ops.throughput failed: ")
    assert source.count() == 3


def test_a_query_cannot_run_a_second_statement(source):
    message = sql_error(f"select day as at, turnover as value from {source.table}; delete from {source.table}")
    assert message.startswith("the query for ops.throughput failed: ")
    assert source.count() == 3


def test_a_slow_query_is_cancelled_by_the_statement_timeout(source, settings):
    settings.PULL_STATEMENT_TIMEOUT = timedelta(milliseconds=1000)
    assert sql_error(SLOW[source.backend]) == "the query for ops.throughput ran longer than 1 s and was cancelled"


def test_more_rows_than_the_cap_are_refused(source, settings):
    settings.PULL_MAX_ROWS = 5
    query = "with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000) select i as at, i as value"
    query += " from n"
    assert sql_error(query) == "more than 5 rows in one pull; narrow it to the new rows (since)"


def test_the_query_must_name_its_columns_at_and_value(source):
    message = sql_error(f"select day, turnover from {source.table}")
    assert (
        message == 'the query for ops.throughput must return columns named "at" and "value" (it returns day, turnover)'
    )


def test_a_missing_table_is_a_clear_error(source):
    message = sql_error("select day as at, turnover as value from no_such_table")
    assert message.startswith("the query for ops.throughput failed: ") and "no_such_table" in message
    assert "[SQL:" not in message and "sqlalche.me" not in message


# --- files, drivers and credentials -------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "duckdb"])
def test_a_database_file_outside_the_granted_directories_is_refused(backend, tmp_path, monkeypatch, settings):
    """The workers' disks hold Steerco's own database and other tenants' files: a file URL is one tenant's."""
    settings.PULL_ENV_GRANTS = {"acme:WAREHOUSE_DSN"}
    settings.PULL_FILE_GRANTS = {f"globex:{tmp_path}", f"acme:{tmp_path / 'acme'}"}
    (tmp_path / "acme").mkdir()
    monkeypatch.setenv("WAREHOUSE_DSN", f"{backend}:///{tmp_path / 'acme' / '..' / 'globex.db'}")
    with pytest.raises(PullError) as caught:
        SqlConnector({"dsn_env": "WAREHOUSE_DSN"}, org=ACME).__enter__()
    assert str(caught.value) == (
        "the database file is not in a directory the operator granted to acme (PULL_FILE_GRANTS); a source opens "
        "files only there"
    )


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path, monkeypatch, settings):
    settings.PULL_ENV_GRANTS = {"acme:WAREHOUSE_DSN"}
    settings.PULL_FILE_GRANTS = {f"acme:{tmp_path}"}
    monkeypatch.setenv("WAREHOUSE_DSN", f"sqlite:///{tmp_path / 'typo.sqlite3'}")
    with pytest.raises(PullError, match="^could not connect to the database of WAREHOUSE_DSN: unable to open"):
        SqlConnector({"dsn_env": "WAREHOUSE_DSN"}, org=ACME).__enter__()
    assert not (tmp_path / "typo.sqlite3").exists()


def test_a_duckdb_query_cannot_read_other_files_of_the_workers(tmp_path, monkeypatch, settings):
    settings.PULL_ENV_GRANTS = {"acme:WAREHOUSE_DSN"}
    settings.PULL_FILE_GRANTS = {f"acme:{tmp_path}"}
    with warehouse("duckdb", tmp_path, None, ROWS) as found:
        monkeypatch.setenv("WAREHOUSE_DSN", found.url)
        (tmp_path / "other.csv").write_text("at,value\n2026-11-29,1\n")
        message = sql_error(f"select * from read_csv('{tmp_path / 'other.csv'}')")
    assert message.startswith("the query for ops.throughput failed: Permission Error")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("oracle+oracledb://u:p@h/db", "Steerco does not read oracle databases; a sql source reads postgresql, "),
        (f"mysql://pull:{SECRET}@127.0.0.1:1/warehouse", "could not connect to the database of WAREHOUSE_DSN: "),
        (f"postgres://pull:{SECRET}@127.0.0.1:1/warehouse", "could not connect to the database of WAREHOUSE_DSN: "),
        (f"host=127.0.0.1 port=1 password={SECRET}", "could not connect to the database of WAREHOUSE_DSN: "),
        (f"not a url {SECRET}://", "could not connect to the database of WAREHOUSE_DSN: "),
    ],
)
def test_connection_errors_are_clear_and_never_repeat_the_url_or_its_password(monkeypatch, settings, url, expected):
    settings.PULL_ENV_GRANTS = {"acme:WAREHOUSE_DSN"}
    monkeypatch.setenv("WAREHOUSE_DSN", url)
    with pytest.raises(PullError) as caught:
        SqlConnector({"dsn_env": "WAREHOUSE_DSN"}, org=ACME).__enter__()
    message = str(caught.value)
    assert expected in message or message.startswith(expected)
    assert SECRET not in message


def test_an_unset_dsn_variable_is_a_clear_error(monkeypatch, settings):
    settings.PULL_ENV_GRANTS = {"acme:WAREHOUSE_DSN"}
    monkeypatch.delenv("WAREHOUSE_DSN", raising=False)
    with pytest.raises(PullError, match=r"^the environment variable WAREHOUSE_DSN \(the database URL\) is not set"):
        SqlConnector({"dsn_env": "WAREHOUSE_DSN"}, org=ACME).__enter__()


# --- dialects whose servers are not reachable here ----------------------------------------------------


def _dialect(name: str) -> sa.Dialect:
    # Their drivers all take pyformat parameters; the dialect is made without a connection (no server here).
    return sa.make_url(f"{name}://").get_dialect()(paramstyle="pyformat")


@pytest.mark.parametrize(
    ("name", "percent"),
    [("snowflake", "%%"), ("bigquery", "%%"), ("mssql+pymssql", "%")],  # a literal % as each driver reads it
)
def test_the_statement_compiles_for_the_dialects_tested_only_here(name, percent):
    # `since` goes in untyped: the driver types it from the value (BigQuery: an aware datetime is a TIMESTAMP).
    compiled = statement("select day as at from daily where day > %(since)s and x like 'a%%'").compile(
        dialect=_dialect(name)
    )
    assert str(compiled) == f"select day as at from daily where day > %(since)s and x like 'a{percent}'"
    assert compiled.construct_params({"since": SINCE}) == {"since": SINCE}
    rules = DIALECTS[sa.make_url(f"{name}://").get_backend_name()]
    assert rules.read_only  # the docs say how its rules hold
    assert isinstance(since_value(rules, SINCE), datetime)


def test_snowflake_sets_its_statement_timeout_for_the_session():
    assert DIALECTS["snowflake"].begin(None, 30.0) == ["ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = 30"]


def test_since_is_utc_and_plain_text_for_sqlite():
    since = datetime(2026, 11, 28, 9, tzinfo=UTC).astimezone(UTC)
    assert since_value(DIALECTS["sqlite"], since) == "2026-11-28 09:00:00"
    assert since_value(DIALECTS["mariadb"], since) == datetime(2026, 11, 28, 9)
    assert since_value(DIALECTS["postgresql"], since) == since
    assert since_value(DIALECTS["duckdb"], since).date() == date(2026, 11, 28)
