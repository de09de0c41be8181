"""Pull connectors: what one run of a data source reads, as raw (at, value) pairs per pull.

Each kind of source is one module here, whose Connector subclass owns the kind's manifest fields (their
defaults, which are required, how they are read and checked), its pulls' fields, the credentials it names and
the partial of its page; scorecards.connectors.registry lists the kinds (docs/extending-data.md).

A connector only fetches; the ingestion `Checker` judges every row, and `scorecards.ingestion.pulls` stores them. Limits
come from settings (PULL_*) so that one slow or runaway source cannot hold a worker: a statement timeout and
a read-only transaction for SQL, connect/read timeouts and a size limit for HTTP, a row cap for both.

A source names its credentials, never holds them: organization secrets (`dsn_secret`, `headers_secret`), read
in the organization's own scope and decrypted only here, or environment variables of the workers that the
operator granted to the organization (`dsn_env`, `headers_env`; PULL_ENV_GRANTS, none by default). Every error
message is scrubbed of the values a connector read, so that neither a DSN nor a header ever reaches a run's
stored error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

import httpx
import psycopg
import sqlalchemy
from django.conf import settings

from governance.models import Organization
from governance.secrets import SECRETS_PAGE, SecretMissing
from governance.selectors import secret_value
from scorecards.connectors.names import Names

if TYPE_CHECKING:
    from governance.manifest.fields import Entry

# What a driver raises for a source that is down, refuses or answers nonsense (a wrong placeholder in a query is
# a TypeError); anything else is a bug and surfaces as one.
SOURCE_ERRORS = (psycopg.Error, sqlalchemy.exc.SQLAlchemyError, httpx.HTTPError, OSError, ValueError, TypeError)


class PullError(Exception):
    """Why a pull failed, in words safe to store and show: never a DSN, a password or a header value."""


@dataclass(frozen=True)
class Unreadable:
    """A row the connector could not take apart (an item that is no JSON object); the Checker records it."""

    message: str


Row = tuple[object, object] | Unreadable  # (at, value) as the source gave them


Credential = tuple[str, str, str]  # (what it is for, "secret" or "env", name)


def seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"


def reason(error: BaseException) -> str:
    """The first line of an error, without the query or connection string some drivers append."""
    # SQLAlchemy wraps the driver's error and appends the statement and a link: the driver's own words suffice.
    error = getattr(error, "orig", None) or error
    args = getattr(error, "args", ())
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):  # PyMySQL: (code, message)
        return args[1].strip().splitlines()[0]
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(error) or type(error).__name__
    return text.strip().splitlines()[0]


class Connector:
    """One run of one source: made (its credentials read), opened (connected), `rows` for each pull, closed.

    Credentials are read when the connector is made, apart from connecting, so that a pull reads them in the same
    database transaction as its other reads, and never holds a transaction open while it connects to the source.

    The class attributes and class methods describe the kind to the manifest and the pages.
    """

    do_not_call_in_templates = True  # a page reads the class's attributes (label, page)
    kind: ClassVar[str]  # DataSource.kind
    label: ClassVar[str]  # shown on the data source pages
    # The manifest fields of this kind with the value an absent one exports as; all are kept in DataSource.config.
    fields: ClassVar[dict[str, object]]
    required: ClassVar[tuple[str, ...]] = ()
    pull_fields: ClassVar[tuple[str, ...]]  # "kpi" first; a field not in pull_required is left out when absent
    pull_required: ClassVar[tuple[str, ...]]
    page: ClassVar[str]  # a template with the partials "facts" (settings rows) and "pulls" (the pulls table)

    @classmethod
    def read_config(cls, entry: Entry, names: Names) -> dict:
        """This kind's fields as the manifest gives them, each checked on its own (read for every entry, so that a
        field of another kind is still checked before it is reported as unused)."""
        raise NotImplementedError

    @classmethod
    def check_config(cls, entry: Entry, data: dict) -> None:
        """Rules across this kind's fields, for an entry of this kind."""

    @classmethod
    def read_pull(cls, pull: Entry) -> dict:
        """This kind's fields of one pull, besides its kpi."""
        raise NotImplementedError

    @classmethod
    def credentials(cls, config: dict) -> list[Credential]:
        """Every credential a source of this kind names."""
        return []

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
            raise PullError(self.scrub(f"{what}: {reason(e)}")) from None

    def capped(self, count: int) -> None:
        if count > settings.PULL_MAX_ROWS:
            raise PullError(f"more than {settings.PULL_MAX_ROWS:,} rows in one pull; narrow it to the new rows (since)")
