"""Sources of kind sql: a query per pull on a PostgreSQL database whose address an organization secret (or a
granted environment variable) holds."""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import psycopg
from django.conf import settings

from scorecards.connectors.base import SOURCE_ERRORS, Connector, Credential, PullError, Row, reason, seconds
from scorecards.connectors.names import Names

if TYPE_CHECKING:
    from governance.manifest.fields import Entry


class SqlConnector(Connector):
    """A query per pull on the database at the address `dsn_secret` (or a granted `dsn_env`) holds, in one
    read-only transaction.

    The query gets `%(since)s`, the newest stored time of its KPI, and returns columns `at` and `value`; a
    literal % in it is written %%. Rows arrive through a server-side cursor, so at most the cap is transferred.
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
                "name the organization secret holding the database address (or a granted dsn_env), one of them",
            )

    @classmethod
    def read_pull(cls, pull: Entry) -> dict:
        return {"query": pull.text("query", max_length=20000, multiline=True)}

    @classmethod
    def credentials(cls, config: dict) -> list[Credential]:
        if not (config.get("dsn_secret") or config.get("dsn_env")):
            return []
        origin = "secret" if config.get("dsn_secret") else "env"
        return [("database address", origin, config.get(f"dsn_{origin}"))]

    def read_credentials(self) -> None:
        if self.config.get("dsn_secret"):
            self.name = self.config["dsn_secret"]
            self.dsn = self.secret(self.name)
        else:
            self.name = self.config.get("dsn_env") or ""
            self.dsn = self.env(self.name, "the database address")
        self.secrets = [self.dsn]
        # A DSN psycopg cannot read fails to connect below, with the DSN scrubbed from the message.
        with suppress(psycopg.Error):
            self.secrets.append(psycopg.conninfo.conninfo_to_dict(self.dsn).get("password") or "")

    def __enter__(self) -> SqlConnector:
        name = self.name
        timeout = settings.PULL_STATEMENT_TIMEOUT
        with self.failing(f"could not connect to the database of {name}"):
            self.connection = psycopg.connect(
                self.dsn, connect_timeout=max(1, int(settings.PULL_CONNECT_TIMEOUT.total_seconds()))
            )
        # Every statement below runs in one READ ONLY transaction (psycopg opens it with the first one): a
        # query that writes fails, and nothing a pull runs is ever committed.
        self.connection.read_only = True
        try:
            with self.failing(f"could not set up the database of {name}"):
                self.connection.execute(
                    "SELECT set_config('statement_timeout', %s, false)", [f"{int(timeout.total_seconds() * 1000)}ms"]
                )
        except PullError:
            self.connection.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.connection.close()

    def rows(self, pull: dict, since: datetime) -> list[Row]:
        kpi = pull.get("kpi")
        try:
            with self.connection.cursor(name="steerco_pull") as cursor:
                cursor.execute(pull.get("query") or "", {"since": since})
                names = [column.name for column in cursor.description or []]
                if "at" not in names or "value" not in names:
                    raise PullError(
                        f'the query for {kpi} must return columns named "at" and "value" '
                        f"(it returns {', '.join(names) or 'nothing'})"
                    )
                at, value = names.index("at"), names.index("value")
                fetched = cursor.fetchmany(settings.PULL_MAX_ROWS + 1)
        except psycopg.errors.QueryCanceled:
            limit = seconds(settings.PULL_STATEMENT_TIMEOUT)
            raise PullError(f"the query for {kpi} ran longer than {limit} and was cancelled") from None
        except SOURCE_ERRORS as e:
            raise PullError(self.scrub(f"the query for {kpi} failed: {reason(e)}")) from None
        self.capped(len(fetched))
        # numeric columns arrive as Decimal; the Checker takes numbers as int or float
        return [(row[at], float(row[value]) if isinstance(row[value], Decimal) else row[value]) for row in fetched]
