"""Every API endpoint, called with another organization's token, neither reads nor writes this one's rows.

A new endpoint fails `test_every_endpoint_is_covered` until ATTEMPTS says how a stranger would try it.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone

from config.api import api
from escalations.engine.sweeps import process_status_changes
from escalations.models import Decision, MitigationPath, Task, Workstream
from governance import tenancy
from governance.manifest.engine import export_manifest
from governance.models import Secret
from governance.services.api_tokens import api_token_create
from scorecards.models import Kpi, Measurement, StatusChange
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
    ("get", "/api/v1/workstreams"): ("workstreams", None),
    ("post", "/api/v1/workstreams/{workstream_id}/mitigation"): (
        "workstreams/{ws}/mitigation",
        {"root_cause": "x", "expected_recovery": "2030-01-01", "actions": []},
    ),
    ("post", "/api/v1/workstreams/{workstream_id}/review"): ("workstreams/{ws}/review", {"decision": "approve"}),
    ("post", "/api/v1/workstreams/{workstream_id}/close"): (
        "workstreams/{ws}/close",
        {"resolution": "accepted_risk", "reason": "x"},
    ),
    ("get", "/api/v1/tasks"): ("tasks", None),
    ("post", "/api/v1/tasks/{task_id}/acknowledge"): ("tasks/{task}/acknowledge", None),
    ("post", "/api/v1/tasks/{task_id}/answer"): ("tasks/{task}/answer", {"impact": False, "reason": "x"}),
    ("get", "/api/v1/notifications"): ("notifications", None),
    ("get", "/api/v1/decisions"): (f"decisions?kpi={KEY}", None),
    ("get", "/api/v1/secrets"): ("secrets", None),
    ("put", "/api/v1/secrets/{name}"): ("secrets/crm_token", {"value": "planted"}),
    ("delete", "/api/v1/secrets/{name}"): ("secrets/crm_token", None),
}
# A secret's name is looked up in the caller's own organization: this PUT sets the stranger's own secret.
OWN_NAMESPACE = {("put", "/api/v1/secrets/{name}")}


@pytest.fixture
def victim(tenant):
    kpi = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key=KEY, name=SECRET)
    Measurement.objects.create(organization=tenant.org, kpi=kpi, at="2026-11-01T00:00Z", value=7)
    StatusChange.objects.create(
        organization=tenant.org, kpi=kpi, old="on_track", new="off_track", reason=SECRET, changed_at=timezone.now()
    )
    process_status_changes()
    Decision.objects.create(
        organization=tenant.org,
        kind=Decision.Kind.TARGET_CHANGED,
        kpi=kpi,
        decided_by=tenant.executive.user,
        reason=SECRET,
        kpi_status="off_track",
    )
    tenant.secret  # noqa: B018  (the victim's crm_token)
    return tenant


def state(org) -> tuple:
    return (
        list(Measurement.objects.filter(organization=org).values_list("id", "value")),
        export_manifest(org),
        list(Workstream.objects.filter(organization=org).values()),
        list(Task.objects.filter(organization=org).values()),
        list(MitigationPath.objects.filter(organization=org).values()),
        list(Decision.objects.filter(organization=org).values()),
        secrets_of(org),
    )


def secrets_of(org) -> list[dict]:
    with tenancy.scope(organization=org.pk):  # the only scope that sees them
        return list(Secret.objects.filter(organization=org).values())


def test_every_endpoint_is_covered():
    paths = api.get_openapi_schema()["paths"]
    assert {(method, path) for path, methods in paths.items() for method in methods} == set(ATTEMPTS)


@pytest.mark.parametrize("personal", [False, True], ids=["org-token", "executive-token"])
@pytest.mark.parametrize("operation", sorted(ATTEMPTS), ids="-".join)
def test_a_strangers_token_neither_reads_nor_writes_another_organization(victim, stranger_tenant, operation, personal):
    token = stranger_tenant.token
    if personal:  # a person of the other organization who may review and close there
        _, token = api_token_create(org=stranger_tenant.org, actor=None, name="x", membership=stranger_tenant.executive)
    url, body = ATTEMPTS[operation]
    url = url.format(
        ws=Workstream.objects.get(organization=victim.org).pk, task=Task.objects.get(organization=victim.org).pk
    )
    if body == "victim's manifest":
        body = export_manifest(victim.org)
    before = state(victim.org)
    response = getattr(Client(), operation[0])(
        f"/api/v1/{url}",
        data=json.dumps(body, default=str) if body else None,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    if "{" in operation[1] and operation not in OWN_NAMESPACE:
        # The victim's key or id is unknown here; only acting for a person needs a personal token first, and
        # deleting a secret an admin's or the organization's token.
        refused = (operation[0] == "post" and not personal) or (operation[0] == "delete" and personal)
        assert response.status_code == (403 if refused else 404), response.content
    assert response.status_code in (200, 403, 404, 422), response.content
    assert SECRET.encode() not in response.content and b"token-of-acme" not in response.content
    if response.status_code == 200:
        assert KEY.encode() not in response.content
    assert state(victim.org) == before
    assert not Kpi.objects.filter(organization=stranger_tenant.org, key=KEY).exists()
