"""The pull connectors on their own: a local HTTP server for http_json (the sql connector: test_sql.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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
