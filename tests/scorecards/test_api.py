"""The measurements and KPI endpoints of API.md, through the whole stack (URL, token, validation, database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.services.api_tokens import api_token_revoke
from governance.services.members import membership_set_active
from scorecards.models import Kpi, Measurement, MeasurementRevision, StatusChange
from tests.factories import KpiFactory

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def call(token: str | None, method: str, path: str, body=None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes | str) or body is None else json.dumps(body)
    return getattr(Client(), method)(f"/api/v1/{path}", data=data, content_type="application/json", **headers, **extra)


def post(token, items):
    return call(token, "post", "measurements", {"measurements": items})


def point(kpi="ops.throughput", at="2026-11-29T08:00:00+01:00", value=12.5):
    return {"kpi": kpi, "at": at, "value": value}


@pytest.fixture(autouse=True)
def frozen():
    cache.clear()  # the rate limit's counters
    with time_machine.travel(NOW, tick=False):
        yield


# --- POST /measurements ------------------------------------------------------------------------


def test_it_stores_measurements_and_marks_the_kpi_for_evaluation(tenant):
    response = post(tenant.token, [point(), point(at="2026-11-28T08:00:00Z", value=11)])
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 2}
    assert sorted(Measurement.objects.filter(kpi=tenant.kpi).values_list("value", flat=True)) == [11, 12.5]
    kpi = Kpi.objects.get(pk=tenant.kpi.pk)
    assert kpi.needs_evaluation
    assert kpi.last_measured_at == datetime(2026, 11, 29, 7, tzinfo=UTC)


def test_the_same_point_again_replaces_the_value_and_keeps_the_revision(tenant):
    post(tenant.token, [point(value=1)])
    assert post(tenant.token, [point(at="2026-11-29T07:00:00Z", value=2)]).json() == {"accepted": 1}
    assert list(Measurement.objects.filter(kpi=tenant.kpi).values_list("value", flat=True)) == [2]
    assert list(MeasurementRevision.objects.values_list("value", flat=True)) == [1]


def test_one_bad_item_rejects_the_request_listing_every_bad_item(tenant):
    items = [
        point(),
        point(kpi="nope"),
        point(at="2026-11-29T08:00:00"),
        point(value="12"),
        point(value=True),
        point(at="2026-12-01T08:00:00Z"),
        {"kpi": "ops.throughput", "at": "2026-11-29T01:00:00Z"},
        {**point(at="2026-11-29T02:00:00Z"), "valeu": 3},
        "not an object",
    ]
    response = post(tenant.token, items)
    assert response.status_code == 422
    assert response.json() == {
        "errors": [
            {"path": "measurements[1].kpi", "message": 'unknown KPI "nope"'},
            {"path": "measurements[2].at", "message": "has no zone; add one, e.g. +01:00 or Z"},
            {"path": "measurements[3].value", "message": "must be a finite number"},
            {"path": "measurements[4].value", "message": "must be a finite number"},
            {"path": "measurements[5].at", "message": "is more than 1d in the future"},
            {"path": "measurements[6].value", "message": "is required"},
            {"path": "measurements[7].valeu", "message": "is not a field of a measurement"},
            {"path": "measurements[8]", "message": "must be an object with kpi, at and value"},
        ]
    }
    assert not Measurement.objects.exists()
    assert not Kpi.objects.get(pk=tenant.kpi.pk).needs_evaluation


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_it_rejects_values_that_are_not_finite(tenant, literal):
    body = '{"measurements": [{"kpi": "ops.throughput", "at": "2026-11-29T08:00:00Z", "value": VALUE}]}'
    body = body.replace("VALUE", literal)
    response = call(tenant.token, "post", "measurements", body)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "measurements[0].value", "message": "must be a finite number"}]


def test_it_refuses_an_item_that_gives_a_field_twice_naming_it(tenant):
    body = (
        '{"measurements": [{"kpi": "ops.throughput", "at": "2026-11-29T08:00:00Z", "value": 1},'
        ' {"kpi": "ops.throughput", "at": "2026-11-29T09:00:00Z", "value": 1, "value": 999}]}'
    )
    response = call(tenant.token, "post", "measurements", body)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "measurements[1].value", "message": "is given more than once"}]
    assert not Measurement.objects.filter(kpi=tenant.kpi).exists()
    twice = call(tenant.token, "post", "measurements", '{"measurements": [], "measurements": []}')
    assert twice.status_code == 422
    assert twice.json()["errors"] == [{"path": "measurements", "message": "is given more than once"}]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ("{not json", 400, "body"),
        (b"\xff\xfe", 400, "body"),
        ("[]", 422, "measurements"),
        ('{"measurements": {}}', 422, "measurements"),
    ],
)
def test_it_refuses_a_malformed_body(tenant, body, status, error):
    response = call(tenant.token, "post", "measurements", body)
    assert response.status_code == status
    assert [e["path"] for e in response.json()["errors"]] == [error]


def test_it_takes_ten_thousand_items_and_refuses_one_more(tenant):
    items = [point(at=(NOW - timedelta(minutes=i)).isoformat(), value=i) for i in range(10_001)]
    response = post(tenant.token, items)
    assert response.status_code == 422
    assert "at most 10,000" in response.json()["errors"][0]["message"]
    assert post(tenant.token, items[:10_000]).json() == {"accepted": 10_000}
    assert Measurement.objects.count() == 10_000


def test_a_body_over_the_limit_is_413_and_stores_nothing(tenant, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post(tenant.token, [point(at=(NOW - timedelta(minutes=i)).isoformat()) for i in range(50)])
    assert response.status_code == 413
    assert response.json() == {"errors": [{"path": "body", "message": "is too large"}]}
    assert not Measurement.objects.exists()


def test_a_token_of_another_organization_does_not_know_its_kpis(tenant, stranger_tenant):
    KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key="acme.revenue")
    response = post(stranger_tenant.token, [point(kpi="acme.revenue")])
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "measurements[0].kpi", "message": 'unknown KPI "acme.revenue"'}]
    # The same key in both organizations: the token writes its own organization's KPI only.
    assert post(stranger_tenant.token, [point()]).status_code == 200
    assert list(Measurement.objects.values_list("kpi_id", flat=True)) == [stranger_tenant.kpi.pk]


def test_an_archived_kpi_takes_no_data(tenant):
    Kpi.objects.filter(pk=tenant.kpi.pk).update(archived_at=NOW)
    assert post(tenant.token, [point()]).json()["errors"][0]["message"] == 'unknown KPI "ops.throughput"'


def test_a_members_personal_token_may_not_send_data_but_an_admins_may(tenant):
    assert post(tenant.personal_token, [point()]).status_code == 403
    from governance.services.api_tokens import api_token_create

    _, admin_token = api_token_create(org=tenant.org, actor=tenant.admin.user, name="x", membership=tenant.admin)
    assert post(admin_token, [point()]).status_code == 200


@pytest.mark.parametrize("token", [None, "stc_not-a-token", "Basic abc"])
def test_it_refuses_a_request_without_a_valid_token(tenant, token):
    response = post(token, [point()])
    assert response.status_code == 401
    assert response.json()["errors"][0]["path"] == "Authorization"
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_revoked_token_and_a_deactivated_members_token_stop_working(tenant):
    assert call(tenant.personal_token, "get", "kpis").status_code == 200
    membership_set_active(membership=tenant.member, actor=tenant.admin.user, active=False)
    assert call(tenant.personal_token, "get", "kpis").status_code == 401
    api_token_revoke(api_token=tenant.api_token, actor=tenant.admin.user)
    assert post(tenant.token, [point()]).status_code == 401


def test_it_records_when_a_token_was_last_used(tenant):
    call(tenant.token, "get", "kpis")
    tenant.api_token.refresh_from_db()
    assert tenant.api_token.last_used_at == NOW


def test_each_token_has_its_own_rate_limit(tenant, settings):
    settings.API_RATE_LIMIT = "2/m"
    assert [call(tenant.token, "get", "kpis").status_code for _ in range(2)] == [200, 200]
    limited = call(tenant.token, "get", "kpis")
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited.json()["errors"][0]["message"]
    assert call(tenant.personal_token, "get", "kpis").status_code == 200


def test_new_data_is_evaluated_right_after_commit(tenant, settings, django_capture_on_commit_callbacks):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            post(tenant.token, [point(value=1)])
    finally:
        app.conf.task_always_eager = False
    kpi = Kpi.objects.get(pk=tenant.kpi.pk)
    assert not kpi.needs_evaluation and kpi.evaluated_at == NOW and kpi.last_value == 1
    assert StatusChange.objects.filter(kpi=kpi).exists()


# --- reads ---------------------------------------------------------------------------------------


def test_it_lists_the_organizations_kpis_a_page_at_a_time(tenant, stranger_tenant, settings):
    settings.API_PAGE_SIZE = 1
    KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key="acme.revenue", name="Revenue")
    first = call(tenant.token, "get", "kpis")
    assert first.status_code == 200
    assert [k["key"] for k in first.json()] == ["acme.revenue"]
    assert first["X-Total-Count"] == "2"
    assert first["Link"] == '<http://testserver/api/v1/kpis?page=2>; rel="next"'
    second = call(tenant.token, "get", "kpis?page=2").json()
    assert second == [
        {
            "key": "ops.throughput",
            "name": "Throughput",
            "team": "ops",
            "owner": "lead@acme.test",
            "unit": tenant.kpi.unit,
            "direction": tenant.kpi.direction,
            "status": "no_data",
            "pending": None,
            "status_since": None,
            "value": None,
            "evaluated_at": None,
        }
    ]
    assert call(tenant.token, "get", "kpis?page=3").json() == []
    assert call(tenant.token, "get", "kpis?page=0").status_code == 422


def test_one_kpi_has_its_rules_graph_and_history(tenant):
    post(tenant.token, [point(value=1)])
    from scorecards.evaluation.sweep import evaluate_due

    evaluate_due(now=NOW)
    body = call(tenant.token, "get", "kpis/ops.throughput").json()
    assert body["key"] == "ops.throughput"
    assert body["thresholds"] == tenant.kpi.thresholds
    assert body["upstream"] == [] and body["downstream"] == []
    assert [(c["old"], c["new"]) for c in body["status_changes"]] == [("no_data", body["status"])]
    assert body["reason"]


def test_an_unknown_kpi_is_404_in_the_error_shape(tenant):
    response = call(tenant.token, "get", "kpis/nope")
    assert response.status_code == 404
    assert response.json() == {"errors": [{"path": "key", "message": 'unknown KPI "nope"'}]}


def test_the_series_since_a_time(tenant):
    post(tenant.token, [point(at=f"2026-11-2{d}T08:00:00Z", value=d) for d in range(5, 9)])
    response = call(tenant.token, "get", "kpis/ops.throughput/measurements?since=2026-11-27T08:00:00%2B00:00")
    assert response.json() == [
        {"at": "2026-11-27T08:00:00Z", "value": 7.0},
        {"at": "2026-11-28T08:00:00Z", "value": 8.0},
    ]
    assert call(tenant.token, "get", "kpis/ops.throughput/measurements?since=2026-11-27").status_code == 422
    assert len(call(tenant.token, "get", "kpis/ops.throughput/measurements").json()) == 4


def test_the_openapi_document_describes_every_endpoint_of_the_contract(client):
    document = client.get("/api/v1/openapi.json").json()
    assert {"/api/v1/measurements", "/api/v1/kpis", "/api/v1/kpis/{key}", "/api/v1/kpis/{key}/measurements"} <= set(
        document["paths"]
    )
    assert "/api/v1/manifest" in document["paths"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()  # the Swagger UI comes from our static files


# --- hypothesis: no body makes a 500 or stores anything when rejected -----------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
items = st.fixed_dictionaries(
    {},
    optional={
        "kpi": st.sampled_from(["ops.throughput", "nope", ""]) | json_values,
        "at": st.datetimes(timezones=st.none() | st.timezones()).map(datetime.isoformat)
        | st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1969-12-31T23:59:59.999Z"])
        | json_values,
        "value": st.floats()
        | st.floats(min_value=1e14)
        | st.floats(max_value=-1e14)
        | st.sampled_from([1.7e308, -1.7e308, 1e15, -1e15, 1e15 + 1])
        | st.integers()
        | json_values,
        "extra": json_values,
    },
)
bodies = st.fixed_dictionaries({"measurements": st.lists(items | json_values, max_size=6)}) | json_values


def _not_json(constant: str):
    raise AssertionError(f"{constant} is not JSON")


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_no_body_makes_a_server_error_or_stores_part_of_a_rejected_request(tenant, body):
    cache.clear()
    before = Measurement.objects.count()
    response = call(tenant.token, "post", "measurements", json.dumps(body, allow_nan=True))
    assert response.status_code in (200, 400, 422), response.content
    assert "errors" in response.json() or response.status_code == 200
    if response.status_code != 200:
        assert Measurement.objects.count() == before
    # Whatever was accepted reads back as JSON (no NaN or Infinity), sums included.
    for path in ("kpis", "kpis/ops.throughput/measurements"):
        read = call(tenant.token, "get", path)
        assert read.status_code == 200
        json.loads(read.content, parse_constant=_not_json)


# --- hypothesis: no query string or nesting makes a 500 ----------------------------------------------

FILTERED = ["kpis", "kpis/ops.throughput", "kpis/ops.throughput/measurements", "workstreams", "tasks", "notifications"]
parameters = st.sampled_from(["q", "kpi", "state", "kind", "assignee", "recipient", "since", "page"]) | st.text(
    max_size=4
)


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(FILTERED),
    key=st.none() | st.text(max_size=8),
    query=st.lists(st.tuples(parameters, st.text(max_size=12)), max_size=3),
)
def test_no_query_string_or_path_makes_a_server_error(tenant, path, key, query):
    cache.clear()
    if key is not None:
        path = "kpis/" + quote(key, safe="")
    response = call(tenant.token, "get", f"{path}?{urlencode(query)}")
    assert response.status_code in (200, 404, 422), response.content
    if response.status_code != 200:
        assert response.json()["errors"]


nesting = st.integers(1, 3).map(lambda n: ("[", "]") if n == 1 else ('{"a":', "}") if n == 2 else ("[1,", "]"))


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    depth=st.sampled_from([1, 10, 33, 900, 1100, 50_000]),
    brackets=nesting,
    where=st.sampled_from(["measurements", "manifest", "manifest-yaml"]),
    inner=json_values,
)
def test_no_nested_body_makes_a_server_error(tenant, depth, brackets, where, inner):
    cache.clear()
    opening, closing = brackets
    nested = opening * depth + json.dumps(inner, allow_nan=True) + closing * depth
    if where == "measurements":
        response = call(tenant.token, "post", "measurements", '{"measurements": [{"kpi": ' + nested + "}]}")
    else:
        body = '{"version": 1, "organization": {"slug": "acme"}, "teams": ' + nested + "}"
        yaml = {"content_type": "application/yaml"} if where == "manifest-yaml" and depth < 2_000 else {}
        response = Client().put(
            "/api/v1/manifest?dry_run=true",
            data=body,
            HTTP_AUTHORIZATION=f"Bearer {tenant.token}",
            **({"content_type": "application/json"} | yaml),
        )
    assert response.status_code in (400, 422), response.content[:300]
    assert response.json()["errors"]


@pytest.mark.django_db
def test_an_address_with_a_newline_answers_in_the_apis_shape(tenant):
    response = call(tenant.token, "get", "kpis/%2F%0A")  # /api/v1/kpis//\n, once found by the property above
    assert response.status_code == 404
    assert response.json()["errors"]
