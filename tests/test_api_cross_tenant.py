"""Every API endpoint, called with another organization's token, neither reads nor writes this one's rows.

A new endpoint fails `test_every_endpoint_is_covered` until ATTEMPTS says how a stranger would try it.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from config.api import api
from governance.manifest import export_manifest
from scorecards.models import Kpi, Measurement
from tests.factories import KpiFactory

KEY = "acme.only"  # a KPI key that exists only in the victim organization
SECRET = "Secret revenue"  # its name, which must never reach the stranger

# (method, OpenAPI path) -> (URL, body) with which a stranger aims at the victim's KPI
ATTEMPTS = {
    ("get", "/api/v1/kpis"): ("kpis", None),
    ("get", "/api/v1/kpis/{key}"): (f"kpis/{KEY}", None),
    ("get", "/api/v1/kpis/{key}/measurements"): (f"kpis/{KEY}/measurements", None),
    ("post", "/api/v1/measurements"): (
        "measurements",
        {"measurements": [{"kpi": KEY, "at": "2026-11-01T00:00:00Z", "value": 1}]},
    ),
    ("get", "/api/v1/manifest"): ("manifest", None),
    ("put", "/api/v1/manifest"): ("manifest", "victim's manifest"),
}


@pytest.fixture
def victim(tenant):
    kpi = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key=KEY, name=SECRET)
    Measurement.objects.create(organization=tenant.org, kpi=kpi, at="2026-11-01T00:00Z", value=7)
    return tenant


def state(org) -> tuple:
    return list(Measurement.objects.filter(organization=org).values_list("id", "value")), export_manifest(org)


def test_every_endpoint_is_covered():
    paths = api.get_openapi_schema()["paths"]
    assert {(method, path) for path, methods in paths.items() for method in methods} == set(ATTEMPTS)


@pytest.mark.parametrize("operation", sorted(ATTEMPTS), ids="-".join)
def test_a_strangers_token_neither_reads_nor_writes_another_organization(victim, stranger_tenant, operation):
    url, body = ATTEMPTS[operation]
    if body == "victim's manifest":
        body = export_manifest(victim.org)
    before = state(victim.org)
    response = getattr(Client(), operation[0])(
        f"/api/v1/{url}",
        data=json.dumps(body, default=str) if body else None,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {stranger_tenant.token}",
    )
    assert response.status_code in (200, 404, 422), response.content
    assert SECRET.encode() not in response.content
    if response.status_code == 200:
        assert KEY.encode() not in response.content
    assert state(victim.org) == before
    assert not Kpi.objects.filter(organization=stranger_tenant.org, key=KEY).exists()
