"""The kinds of data source: one line each (docs/extending-data.md, "Adding a data connector"). The manifest reads
a source's fields, the pull its connector and the page its partial from here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scorecards.connectors.base import Connector, Credential, PullError
from scorecards.connectors.http_json import HttpJsonConnector
from scorecards.connectors.spreadsheet import SpreadsheetConnector
from scorecards.connectors.sql import SqlConnector

if TYPE_CHECKING:
    from scorecards.models import DataSource

# In the order the manifest lists their fields.
CONNECTORS: dict[str, type[Connector]] = {
    SqlConnector.kind: SqlConnector,
    HttpJsonConnector.kind: HttpJsonConnector,
    SpreadsheetConnector.kind: SpreadsheetConnector,
}


def connector_kind(kind: str) -> type[Connector] | None:
    return CONNECTORS.get(kind)


def connector_for(source: DataSource) -> Connector:
    if source.kind not in CONNECTORS:
        raise PullError(f'no connector for kind "{source.kind}"')
    return CONNECTORS[source.kind](source.config or {}, org=source.organization)


def credentials(source: DataSource) -> list[Credential]:
    """(what it is for, "secret" or "env", name) for every credential the source names."""
    kind = connector_kind(source.kind)
    return kind.credentials(source.config or {}) if kind else []


def config_fields() -> dict[str, object]:
    """Every kind's manifest fields with the value an absent one exports as."""
    return {name: default for kind in CONNECTORS.values() for name, default in kind.fields.items()}


def pull_fields() -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for kind in CONNECTORS.values() for name in kind.pull_fields))
