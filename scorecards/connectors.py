"""Pull connectors: what one run of a data source reads, as raw (at, value) pairs per pull.

A connector only fetches; the ingestion `Checker` judges every row, and `scorecards.pulls` stores them. Limits
come from settings (PULL_*) so that one slow or runaway source cannot hold a worker: a statement timeout and
a read-only transaction for SQL, connect/read timeouts and a size limit for HTTP, a row cap for both.

A source names its credentials, never holds them: organization secrets (`dsn_secret`, `headers_secret`), read
in the organization's own scope and decrypted only here, or environment variables of the workers that the
operator granted to the organization (`dsn_env`, `headers_env`; PULL_ENV_GRANTS, none by default). Every error
message is scrubbed of the values a connector read, so that neither a DSN nor a header ever reaches a run's
stored error.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import quote, urlsplit

import httpx
import psycopg
from django.conf import settings

from governance import outbound
from governance.models import Organization
from governance.secrets import SECRETS_PAGE, SecretMissing
from governance.selectors import secret_value
from scorecards.ingestion import NonFinite
from scorecards.models import DataSource

# What a driver raises for a source that is down, refuses or answers nonsense (a wrong placeholder in a query is
# a TypeError); anything else is a bug and surfaces as one.
SOURCE_ERRORS = (psycopg.Error, httpx.HTTPError, OSError, ValueError, TypeError)


class PullError(Exception):
    """Why a pull failed, in words safe to store and show: never a DSN, a password or a header value."""


@dataclass(frozen=True)
class Unreadable:
    """A row the connector could not take apart (an item that is no JSON object); the Checker records it."""

    message: str


Row = tuple[object, object] | Unreadable  # (at, value) as the source gave them


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"


def _reason(error: BaseException) -> str:
    """The first line of an error, without the query or connection string some drivers append."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(error) or type(error).__name__
    return text.strip().splitlines()[0]


class Connector:
    """One run of one source: made (its credentials read), opened (connected), `rows` for each pull, closed.

    Credentials are read when the connector is made, apart from connecting, so that a pull reads them in the same
    database transaction as its other reads, and never holds a transaction open while it connects to the source.
    """

    def __init__(self, config: dict, *, org: Organization) -> None:
        self.config = config
        self.org = org
        self.secrets: list[str] = []
        self.read_credentials()

    def read_credentials(self) -> None:
        """Reads the secrets and variables the source names into the connector (a kind may need none)."""

    def secret(self, name: str) -> str:
        """The organization's secret `name`, readable only in the organization's own scope (the pull's task)."""
        try:
            return secret_value(org=self.org, name=name)
        except SecretMissing as e:
            raise PullError(str(e)) from None

    def env(self, name: str, what: str) -> str:
        """A variable of the workers' environment that the operator granted to this organization.

        Every organization's sources run in the same workers: a variable nobody granted may hold another
        organization's credentials or Steerco's own keys, so none is readable without a grant, and Steerco's own
        settings never are (a source could send them anywhere).
        """
        if name in settings.PULL_ENV_RESERVED or name.startswith("DJANGO_"):
            raise PullError(
                f"the environment variable {name} is one of Steerco's own settings; a source never reads it"
            )
        if f"{self.org.slug}:{name}" not in settings.PULL_ENV_GRANTS:
            raise PullError(
                f"the environment variable {name} is not granted to {self.org.slug}: store the value as an "
                f"organization secret ({SECRETS_PAGE}) and name it instead"
            )
        value = os.environ.get(name, "")
        if not value:
            raise PullError(f"the environment variable {name} ({what}) is not set for the workers")
        return value

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def rows(self, pull: dict, since: datetime) -> list[Row]:
        raise NotImplementedError

    def scrub(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= 4:  # shorter ones would blank out ordinary words (and guard nothing)
                text = text.replace(secret, "***")
        return text

    @contextmanager
    def failing(self, what: str) -> Iterator[None]:
        """Turns a source's error into a PullError that says `what` failed, scrubbed of the secrets read so far."""
        try:
            yield
        except PullError as e:
            raise PullError(self.scrub(str(e))) from None
        except SOURCE_ERRORS as e:
            raise PullError(self.scrub(f"{what}: {_reason(e)}")) from None

    def capped(self, count: int) -> None:
        if count > settings.PULL_MAX_ROWS:
            raise PullError(f"more than {settings.PULL_MAX_ROWS:,} rows in one pull; narrow it to the new rows (since)")


class SqlConnector(Connector):
    """A query per pull on the database at the address `dsn_secret` (or a granted `dsn_env`) holds, in one
    read-only transaction.

    The query gets `%(since)s`, the newest stored time of its KPI, and returns columns `at` and `value`; a
    literal % in it is written %%. Rows arrive through a server-side cursor, so at most the cap is transferred.
    """

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
            limit = _seconds(settings.PULL_STATEMENT_TIMEOUT)
            raise PullError(f"the query for {kpi} ran longer than {limit} and was cancelled") from None
        except SOURCE_ERRORS as e:
            raise PullError(self.scrub(f"the query for {kpi} failed: {_reason(e)}")) from None
        self.capped(len(fetched))
        # numeric columns arrive as Decimal; the Checker takes numbers as int or float
        return [(row[at], float(row[value]) if isinstance(row[value], Decimal) else row[value]) for row in fetched]


class HttpJsonConnector(Connector):
    """A GET of `url` per pull (`{since}` in it becomes the KPI's newest stored time), headers from organization
    secrets (`headers_secret`) or granted environment variables (`headers_env`), and a mapping per pull: the list
    at `items` (a dotted path; the root when absent) holds objects whose fields `at` and `value` are read. Pulls
    that ask for the same address share one request."""

    def read_credentials(self) -> None:
        self.headers = {header: self.secret(name) for header, name in (self.config.get("headers_secret") or {}).items()}
        for header, name in (self.config.get("headers_env") or {}).items():
            self.headers[header] = self.env(name, f"the {header} header")
        self.secrets = list(self.headers.values())

    def __enter__(self) -> HttpJsonConnector:
        self.client = outbound.client(
            allow_setting="PULL_ALLOW_PRIVATE_NETWORKS",
            timeout=httpx.Timeout(
                settings.PULL_HTTP_READ_TIMEOUT.total_seconds(),
                connect=settings.PULL_CONNECT_TIMEOUT.total_seconds(),
            ),
            # Redirects are not followed: a header meant for this host must not travel on to another one.
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "Steerco data pull"},
        )
        self.answers: dict[str, object] = {}
        return self

    def __exit__(self, *exc_info) -> None:
        self.client.close()

    def rows(self, pull: dict, since: datetime) -> list[Row]:
        url = (self.config.get("url") or "").replace("{since}", quote(since.isoformat(), safe=""))
        if url not in self.answers:
            self.answers[url] = self._get(url)
        items = self._items(self.answers[url], pull.get("items"), pull.get("kpi"))
        self.capped(len(items))
        at, value = pull.get("at"), pull.get("value")
        return [
            (item.get(at), item.get(value)) if isinstance(item, dict) else Unreadable("is not a JSON object")
            for item in items
        ]

    def _get(self, url: str) -> object:
        host = urlsplit(url).hostname or "the server"
        limit = settings.PULL_HTTP_MAX_BYTES
        # The read timeout holds for each read; this deadline bounds a server that trickles its answer.
        deadline = time.monotonic() + settings.PULL_HTTP_READ_TIMEOUT.total_seconds()
        body = bytearray()
        with self.failing(f"could not get an answer from {host}"):
            try:
                with self.client.stream("GET", url, headers=self.headers) as response:
                    if not response.is_success:
                        raise PullError(f"{host} answered HTTP {response.status_code} {response.reason_phrase}".strip())
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise PullError(f"the answer from {host} is larger than the limit of {limit:,} bytes")
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise PullError(f"the answer from {host} is larger than the limit of {limit:,} bytes")
                        if time.monotonic() > deadline:
                            raise httpx.ReadTimeout("the answer kept arriving")
                    kind = response.headers.get("content-type", "no content type").split(";")[0]
            except httpx.TimeoutException:
                limit_text = _seconds(settings.PULL_HTTP_READ_TIMEOUT)
                raise PullError(f"{host} did not answer within {limit_text}") from None
        try:
            # NaN and Infinity are not JSON; parsed as NonFinite, the Checker rejects them row by row.
            return json.loads(body, parse_constant=NonFinite)
        except (ValueError, UnicodeDecodeError):
            raise PullError(f"the answer from {host} is not JSON ({kind})") from None

    def _items(self, document: object, path: str | None, kpi: object) -> list:
        node = document
        for part in path.split(".") if path else []:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise PullError(f'the answer for {kpi} has no "{path}" (nothing at "{part}")')
        if not isinstance(node, list):
            where = f'"{path}"' if path else "its top level"
            raise PullError(f"the answer for {kpi} holds no list at {where}")
        return node


CONNECTORS: dict[str, type[Connector]] = {
    DataSource.Kind.SQL: SqlConnector,
    DataSource.Kind.HTTP_JSON: HttpJsonConnector,
}


def connector_for(source: DataSource) -> Connector:
    if source.kind not in CONNECTORS:
        raise PullError(f'no connector for kind "{source.kind}"')
    return CONNECTORS[source.kind](source.config or {}, org=source.organization)
