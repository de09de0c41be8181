"""Sources of kind sql: a query per pull on any database SQLAlchemy reaches (PostgreSQL, MySQL/MariaDB, SQL Server,
SQLite and DuckDB files, Snowflake, BigQuery), whose URL an organization secret (or a granted environment variable)
holds. Each dialect's read-only rules are one entry of DIALECTS."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import quote

import psycopg
import sqlalchemy as sa
from django.conf import settings
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from scorecards.connectors.base import SOURCE_ERRORS, Connector, Credential, PullError, Row, reason, seconds
from scorecards.connectors.names import Names

if TYPE_CHECKING:
    from governance.manifest.fields import Entry

# The placeholder of the psycopg-only connector this one replaced; a stored query may still use it.
OLD_SINCE = "%(since)s"


def _mysql_cancelled(error: BaseException) -> bool:
    # MariaDB's max_statement_time (1969) and MySQL's max_execution_time (3024)
    return bool(getattr(error, "args", None)) and error.args[0] in (1969, 3024)


@dataclass(frozen=True)
class Dialect:
    """How a pull keeps to the read-only rules on one kind of database."""

    begin: Callable[[sa.Connection, float], list[str]] = lambda connection, timeout: []
    connect_args: Callable[[float], dict] = lambda connect_timeout: {}
    cancelled: Callable[[BaseException], bool] = lambda error: False
    naive_since: bool = False  # no time zones: `since` is bound as a UTC time without one
    file: bool = False  # a file on the workers' disks: only under a directory granted to the organization
    # Without a statement timeout of its own, a timer interrupts the connection (sqlite3 and duckdb can).
    interrupt: bool = False
    extra: str = ""  # the optional dependency that installs the driver
    read_only: str = ""  # how the rules hold, for the docs and a failing connection's hint
    drivers: dict[str, str] = field(default_factory=dict)  # a URL without a driver gets the one we install


def _postgresql_begin(connection: sa.Connection, timeout: float) -> list[str]:
    # Both hold for this transaction only, which the pull never commits.
    return ["SET TRANSACTION READ ONLY", f"SET LOCAL statement_timeout = {int(timeout * 1000)}"]


def _mysql_begin(connection: sa.Connection, timeout: float) -> list[str]:
    if connection.dialect.is_mariadb:
        limit = f"SET SESSION max_statement_time = {timeout:g}"
    else:
        limit = f"SET SESSION max_execution_time = {int(timeout * 1000)}"
    return [limit, "START TRANSACTION READ ONLY"]


MYSQL = Dialect(
    begin=_mysql_begin,
    connect_args=lambda t: {"connect_timeout": max(1, int(t))},
    cancelled=_mysql_cancelled,
    naive_since=True,
    read_only="START TRANSACTION READ ONLY; max_statement_time (MariaDB) or max_execution_time (MySQL)",
    drivers={"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"},
)

DIALECTS: dict[str, Dialect] = {
    "postgresql": Dialect(
        begin=_postgresql_begin,
        connect_args=lambda t: {"connect_timeout": max(1, int(t))},
        cancelled=lambda error: isinstance(error, psycopg.errors.QueryCanceled),
        read_only="SET TRANSACTION READ ONLY; statement_timeout",
        drivers={"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg"},
    ),
    "mysql": MYSQL,
    "mariadb": MYSQL,
    "mssql": Dialect(
        connect_args=lambda t: {
            "login_timeout": max(1, int(t)),
            "timeout": int(settings.PULL_STATEMENT_TIMEOUT.total_seconds()),
        },
        naive_since=True,
        extra="sqlserver",
        read_only="no read-only transaction: give the login read access only; the driver's query timeout",
        drivers={"mssql": "mssql+pymssql"},
    ),
    "sqlite": Dialect(
        begin=lambda connection, timeout: ["PRAGMA query_only = ON"],
        naive_since=True,
        file=True,
        interrupt=True,
        read_only="opened read-only (mode=ro) with PRAGMA query_only; interrupted at the statement timeout",
    ),
    "duckdb": Dialect(
        file=True,
        interrupt=True,
        extra="duckdb",
        read_only="opened read_only without file access outside it; interrupted at the statement timeout",
    ),
    "snowflake": Dialect(
        begin=lambda connection, timeout: [f"ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = {max(1, int(timeout))}"],
        connect_args=lambda t: {"login_timeout": max(1, int(t))},
        extra="snowflake",
        read_only="no read-only transaction: use a role with SELECT only; STATEMENT_TIMEOUT_IN_SECONDS",
    ),
    "bigquery": Dialect(
        extra="bigquery",
        read_only="no read-only transaction: use a service account with BigQuery Data Viewer and Job User only",
    ),
}


def since_value(dialect: Dialect, since: datetime) -> object:
    since = since.astimezone(UTC)
    if not dialect.naive_since:
        return since
    # sqlite3's adapter for datetimes is deprecated: SQLite compares text, so the time goes in as ISO text.
    return since.replace(tzinfo=None).isoformat(sep=" ") if dialect.file else since.replace(tzinfo=None)


def statement(query: str) -> sa.TextClause:
    """The pull's query with `:since` bound; a query written for the old connector (`%(since)s`, `%%`) reads too."""
    if OLD_SINCE in query:
        query = query.replace(OLD_SINCE, ":since").replace("%%", "%")
    return sa.text(query)


def _granted_file(path: str, slug: str) -> str:
    real = os.path.realpath(path)
    for grant in settings.PULL_FILE_GRANTS:
        org, _, directory = grant.partition(":")
        if (
            org == slug
            and directory
            and os.path.commonpath([real, os.path.realpath(directory)]) == os.path.realpath(directory)
        ):
            return real
    raise PullError(
        f"the database file is not in a directory the operator granted to {slug} (PULL_FILE_GRANTS); "
        "a source opens files only there"
    )


class SqlConnector(Connector):
    """A query per pull on the database at the SQLAlchemy URL `dsn_secret` (or a granted `dsn_env`) holds, in one
    read-only transaction where the database has one (DIALECTS).

    The query gets `:since`, the newest stored time of its KPI, and returns columns `at` and `value`. Rows arrive
    through a server-side cursor where the driver has one, so at most the cap is transferred.
    """

    kind, label, page = "sql", "SQL query", "scorecards/connectors/sql.html"
    fields = {"dsn_secret": None, "dsn_env": None}
    pull_fields = pull_required = ("kpi", "query")

    @classmethod
    def read_config(cls, entry: Entry, names: Names) -> dict:
        return {
            "dsn_secret": names.secret("dsn_secret", entry.text("dsn_secret", max_length=64)),
            "dsn_env": names.env("dsn_env", entry.text("dsn_env", max_length=128)),
        }

    @classmethod
    def check_config(cls, entry: Entry, data: dict) -> None:
        if entry.has("dsn_secret") == entry.has("dsn_env"):
            entry.error(
                "dsn_secret",
                "name the organization secret holding the database URL (or a granted dsn_env), one of them",
            )

    @classmethod
    def read_pull(cls, pull: Entry) -> dict:
        return {"query": pull.text("query", max_length=20000, multiline=True)}

    @classmethod
    def credentials(cls, config: dict) -> list[Credential]:
        if not (config.get("dsn_secret") or config.get("dsn_env")):
            return []
        origin = "secret" if config.get("dsn_secret") else "env"
        return [("database URL", origin, config.get(f"dsn_{origin}"))]

    def read_credentials(self) -> None:
        if self.config.get("dsn_secret"):
            self.name = self.config["dsn_secret"]
            self.dsn = self.secret(self.name).strip()
        else:
            self.name = self.config.get("dsn_env") or ""
            self.dsn = self.env(self.name, "the database URL").strip()
        self.secrets = [self.dsn]
        # A URL SQLAlchemy cannot read fails to connect below, with the URL scrubbed from the message.
        with suppress(*SOURCE_ERRORS, sa.exc.ArgumentError):
            self.secrets.append(make_url(self.dsn).password or "")
        with suppress(psycopg.Error):
            self.secrets.append(psycopg.conninfo.conninfo_to_dict(self.dsn).get("password") or "")

    def engine(self) -> sa.Engine:
        """An engine of one connection for this run; the dialect's rules are in self.dialect."""
        connect_timeout = settings.PULL_CONNECT_TIMEOUT.total_seconds()
        if "://" not in self.dsn:  # a libpq "host=... dbname=..." string, as the PostgreSQL-only connector took
            self.dialect = DIALECTS["postgresql"]
            dsn = self.dsn
            return sa.create_engine(
                "postgresql+psycopg://",
                poolclass=NullPool,
                creator=lambda: psycopg.connect(dsn, connect_timeout=max(1, int(connect_timeout))),
            )
        url = make_url(self.dsn)
        backend = url.get_backend_name()
        if backend == "postgres":
            backend = "postgresql"
        self.dialect = DIALECTS.get(backend)
        if self.dialect is None:
            raise PullError(f"Steerco does not read {backend} databases; a sql source reads {', '.join(DIALECTS)}")
        if "+" not in url.drivername and url.drivername in self.dialect.drivers:
            url = url.set(drivername=self.dialect.drivers[url.drivername])
        options: dict = {"poolclass": NullPool, "connect_args": self.dialect.connect_args(connect_timeout)}
        if self.dialect.file:
            if not url.database or url.database == ":memory:":
                raise PullError("the database URL names no database file")
            path = _granted_file(url.database, self.org.slug)
            if backend == "sqlite":
                # mode=ro: a wrong path fails instead of creating an empty database; nothing can be written.
                options["creator"] = lambda: sqlite3.connect(
                    f"file:{quote(path)}?mode=ro", uri=True, timeout=connect_timeout, check_same_thread=False
                )
                url = URL.create("sqlite")
            else:
                # No file outside the database (read_csv('/etc/...')), no extension loaded from the network.
                options["connect_args"] = {"read_only": True, "config": {"enable_external_access": False}}
                url = url.set(database=path)
        try:
            return sa.create_engine(url, **options)
        except (ImportError, sa.exc.NoSuchModuleError):
            extra = f" (pip install steerco[{self.dialect.extra}])" if self.dialect.extra else ""
            raise PullError(f"the driver for {backend} is not installed on the workers{extra}") from None

    def __enter__(self) -> SqlConnector:
        name = self.name
        with self.failing(f"could not connect to the database of {name}"):
            self.db = self.engine()
            self.source = self.db.connect()
        try:
            with self.failing(f"could not set up the database of {name}"):
                # Every statement below runs in one transaction, read-only where the database has one, never
                # committed: __exit__ rolls it back.
                for setup in self.dialect.begin(self.source, settings.PULL_STATEMENT_TIMEOUT.total_seconds()):
                    self.source.exec_driver_sql(setup)
        except PullError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        with suppress(*SOURCE_ERRORS):
            self.source.rollback()
        self.source.close()
        self.db.dispose()

    def rows(self, pull: dict, since: datetime) -> list[Row]:
        kpi = pull.get("kpi")
        timeout = settings.PULL_STATEMENT_TIMEOUT.total_seconds()
        timer = None
        if self.dialect.interrupt:
            raw = self.source.connection.dbapi_connection
            timer = threading.Timer(timeout, raw.interrupt)
            timer.start()
        try:
            result = self.source.execution_options(stream_results=True).execute(
                statement(pull.get("query") or ""), {"since": since_value(self.dialect, since)}
            )
            names = [str(name).lower() for name in result.keys()]  # noqa: SIM118 (Snowflake names columns in capitals)
            if "at" not in names or "value" not in names:
                result.close()
                raise PullError(
                    f'the query for {kpi} must return columns named "at" and "value" '
                    f"(it returns {', '.join(names) or 'nothing'})"
                )
            at, value = names.index("at"), names.index("value")
            fetched = result.fetchmany(settings.PULL_MAX_ROWS + 1)
            result.close()
        except SOURCE_ERRORS as e:
            error = getattr(e, "orig", None) or e
            if self.dialect.cancelled(error) or (timer is not None and timer.finished.is_set()):
                limit = seconds(settings.PULL_STATEMENT_TIMEOUT)
                raise PullError(f"the query for {kpi} ran longer than {limit} and was cancelled") from None
            raise PullError(self.scrub(f"the query for {kpi} failed: {reason(e)}")) from None
        finally:
            if timer is not None:
                timer.cancel()
        self.capped(len(fetched))
        # numeric columns arrive as Decimal; the Checker takes numbers as int or float
        return [(row[at], float(row[value]) if isinstance(row[value], Decimal) else row[value]) for row in fetched]
