"""The spreadsheet connector against a loopback HTTP server serving published CSV and TSV, and a pull of it into
stored measurements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from governance.models import Organization
from scorecards.connectors.base import PullError, Unreadable
from scorecards.connectors.spreadsheet import SpreadsheetConnector
from scorecards.ingestion.pulls import data_source_pull
from scorecards.models import DataSource, Measurement

SINCE = datetime(2026, 11, 28, 8, tzinfo=UTC)
ACME = Organization(slug="acme")
WIDE = b'Week,Leads,Revenue\r\n2026-11-23,41,"1,250.5"\r\n2026-11-30,44,1310\r\n'
LONG = b"kpi\tat\tvalue\nmkt.leads\t2026-11-23\t41\nsc.otif\t2026-11-23\t0.93\nmkt.leads\t2026-11-30\t44\n"


def sheet_rows(server, body: bytes | None, pull: dict, content_type: str = "text/csv") -> list:
    if body is not None:
        server.answer("/pub", body=body, content_type=content_type)
    with SpreadsheetConnector({"url": server.url("/pub")}, org=ACME) as connector:
        return connector.rows({"kpi": "mkt.leads", **pull}, SINCE)


def sheet_error(server, body: bytes | None, pull: dict) -> str:
    with pytest.raises(PullError) as caught:
        sheet_rows(server, body, pull)
    return str(caught.value)


def test_it_maps_the_named_columns_of_a_wide_csv_sheet_in_any_case(json_server):
    assert sheet_rows(json_server, WIDE, {"at": "week", "value": "LEADS"}) == [
        ("2026-11-23", 41.0),
        ("2026-11-30", 44.0),
    ]


def test_a_kpi_column_takes_the_rows_of_the_pulls_kpi_from_a_tsv_sheet(json_server):
    rows = sheet_rows(
        json_server, LONG, {"at": "at", "value": "value", "kpi_column": "kpi"}, "text/tab-separated-values"
    )
    assert rows == [("2026-11-23", 41.0), ("2026-11-30", 44.0)]


def test_a_value_that_is_no_number_is_left_for_the_checker(json_server):
    # "1,250.5" (a thousands separator) is text: the Checker rejects it with its row, and the run stores nothing
    assert sheet_rows(json_server, WIDE, {"at": "Week", "value": "Revenue"}) == [
        ("2026-11-23", "1,250.5"),
        ("2026-11-30", 1310.0),
    ]


def test_a_missing_column_names_the_header_it_found(json_server):
    message = sheet_error(json_server, WIDE, {"at": "Week", "value": "Visits"})
    assert message == 'the sheet from 127.0.0.1 (line 1): missing column "Visits": the header has week, leads, revenue'


def test_an_empty_or_undecodable_sheet_is_a_clear_error(json_server):
    assert sheet_error(json_server, b"\n\n", {"at": "a", "value": "v"}) == "the sheet from 127.0.0.1 (line 1): is empty"
    assert sheet_error(json_server, b"Week,Leads\n2026-11-23,\xfc\n", {"at": "Week", "value": "Leads"}) == (
        "the sheet from 127.0.0.1 (line 2): is not UTF-8 text (byte 0xFC); save the file as CSV UTF-8 and try again"
    )


def test_a_broken_line_is_an_unreadable_row(json_server):
    body = b'Week,Leads\n2026-11-23,41\n"' + b"x" * 200_000 + b"\n"
    rows = sheet_rows(json_server, body, {"at": "Week", "value": "Leads"})
    assert rows[0] == ("2026-11-23", 41.0) and isinstance(rows[1], Unreadable)
    assert rows[1].message.startswith("line 3 cannot be read as CSV: field larger than field limit")


def test_a_published_link_that_redirects_is_followed(json_server):
    json_server.answer("/pub", body=WIDE, content_type="text/csv")
    json_server.answer("/d/e/link", status=307, body=b"", content_type="text/html")
    json_server.answers["/d/e/link"].location = json_server.url("/pub")
    with SpreadsheetConnector({"url": json_server.url("/d/e/link")}, org=ACME) as connector:
        rows = connector.rows({"kpi": "mkt.leads", "at": "Week", "value": "Leads"}, SINCE)
    assert len(rows) == 2 and [path for path, _ in json_server.requests] == ["/d/e/link", "/pub"]


def test_an_answer_other_than_2xx_is_an_error(json_server):
    json_server.answer("/pub", status=404, body=b"", content_type="text/html")
    assert sheet_error(json_server, None, {"at": "Week", "value": "Leads"}) == "127.0.0.1 answered HTTP 404 Not Found"


def test_a_pull_stores_the_sheets_rows_in_the_organizations_zone(json_server, tenant):
    tenant.org.timezone = "Europe/Berlin"
    tenant.org.save()
    json_server.answer(
        "/pub", body=b"Week,Throughput\n2026-11-23,41\n2026-11-24T09:00:00Z,44\n", content_type="text/csv"
    )
    source = DataSource.objects.create(
        organization=tenant.org,
        key="sheet",
        kind="spreadsheet",
        every=timedelta(hours=1),
        config={
            "url": json_server.url("/pub"),
            "pulls": [{"kpi": tenant.kpi.key, "at": "Week", "value": "Throughput"}],
        },
    )
    run = data_source_pull(source=source)
    assert (run.error, run.rows) == ("", 2)
    assert list(Measurement.objects.filter(kpi=tenant.kpi).order_by("at").values_list("at", "value")) == [
        (datetime(2026, 11, 22, 23, tzinfo=UTC), 41.0),
        (datetime(2026, 11, 24, 9, tzinfo=UTC), 44.0),
    ]
