"""Sources of kind spreadsheet: a published CSV or TSV address (Google Sheets "publish to the web", a OneDrive or
Excel Online download link), read with the measurement import's parser and mapped by column names."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scorecards.connectors.base import PullError, Row, Unreadable
from scorecards.connectors.http_json import HttpJsonConnector, url_field
from scorecards.connectors.names import Names
from scorecards.tables import BadLine, UnreadableFile, header, number, read_table, text

if TYPE_CHECKING:
    from governance.manifest.fields import Entry


class SpreadsheetConnector(HttpJsonConnector):
    """A GET of `url` per run; each pull names the columns holding its times (`at`) and values (`value`), and in a
    sheet of many KPIs the column holding the KPI key (`kpi_column`), whose rows with the pull's key it takes. The
    header line names the columns (any case); other columns are ignored. A published sheet needs no credentials,
    so the link's redirects (Google sends one to its content server) are followed."""

    kind, label, page = "spreadsheet", "Spreadsheet (CSV/TSV link)", "scorecards/connectors/spreadsheet.html"
    fields = {"url": None}
    required = ("url",)
    pull_fields, pull_required = ("kpi", "at", "value", "kpi_column"), ("kpi", "at", "value")
    accept = "text/csv, text/tab-separated-values, text/plain;q=0.9, */*;q=0.1"
    follow_redirects = True

    @classmethod
    def read_config(cls, entry: Entry, names: Names) -> dict:
        return {"url": url_field(entry)}

    @classmethod
    def check_config(cls, entry: Entry, data: dict) -> None:
        pass

    @classmethod
    def read_pull(cls, pull: Entry) -> dict:
        return {
            "at": pull.text("at", max_length=200),
            "value": pull.text("value", max_length=200),
            "kpi_column": pull.text("kpi_column", max_length=200),
        }

    @classmethod
    def credentials(cls, config: dict) -> list:
        return []

    def read_credentials(self) -> None:
        self.headers, self.secrets = {}, []

    def rows(self, pull: dict, since: datetime) -> list[Row]:
        url = self.config.get("url") or ""
        if url not in self.answers:
            self.answers[url] = self.download(url)[0]
        host = urlsplit(url).hostname or "the server"
        wanted = [pull.get("at"), pull.get("value"), *([pull["kpi_column"]] if pull.get("kpi_column") else [])]
        try:
            table = read_table(self.answers[url])
            lines = iter(table.lines)
            first = next((line for line in lines if not isinstance(line, BadLine)), None)
            if first is None:
                raise UnreadableFile(1, "is empty")
            columns = header(first, wanted, only=False)
        except UnreadableFile as e:
            raise PullError(f"the sheet from {host} (line {e.line}): {e.message}") from None
        rows: list[Row] = []
        for line in lines:
            if isinstance(line, BadLine):
                rows.append(Unreadable(f"line {line.number} {line.message}"))
                continue
            cells = line.fields + [""] * (len(first.fields) - len(line.fields))
            if pull.get("kpi_column") and text(cells[columns[pull["kpi_column"]]]) != pull.get("kpi"):
                continue
            at, value = cells[columns[pull["at"]]], number(cells[columns[pull["value"]]], table.decimal_comma)
            rows.append((text(at), value))
        self.capped(len(rows))
        return rows
