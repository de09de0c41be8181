"""Error reports (SENTRY_DSN): what reaches Sentry carries no tenant's name, value, email, slug or token."""

from __future__ import annotations

import warnings

import pytest
import sentry_sdk
from django.urls import path
from sentry_sdk.transport import Transport

from config.operations.errors import init_sentry
from config.urls import urlpatterns as steerco_urls
from scorecards.models import Kpi


class Captured(Transport):
    """Keeps the envelopes instead of sending them: no Sentry server in the tests."""

    envelopes: list = []

    def capture_envelope(self, envelope) -> None:
        Captured.envelopes.append(envelope)


def failing_view(request, token):
    kpi = Kpi.objects.for_org(request.org).first()
    raise ValueError(f"{kpi.name} of {request.user.email} at {kpi.last_value} in {request.org.slug}, {request.org}")


urlpatterns = [path("o/<slug:org_slug>/fail/<str:token>/", failing_view, name="fail"), *steerco_urls]


@pytest.fixture
def sentry():
    Captured.envelopes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the SDK's own deprecation warnings (send_default_pii) fail the setup
        init_sentry("http://public@127.0.0.1:9/1", environment="test", transport=Captured)
    yield Captured.envelopes
    sentry_sdk.init()  # off again


@pytest.mark.urls(__name__)
def test_an_error_report_holds_no_tenant_data(sentry, tenant):
    client = tenant.client(tenant.admin)
    client.raise_request_exception = False
    Kpi.objects.filter(pk=tenant.kpi.pk).update(last_value=987654.321)
    token = "-".join(["tok", str(tenant.org.pk * 7919), "link"])  # built, so the test's source cannot hold it
    client.cookies["tenant_note"] = f"{token}-cookie"
    response = client.get(f"/o/{tenant.org.slug}/fail/{token}/?q={token}-query", HTTP_X_TENANT_NOTE=f"{token}-header")
    assert response.status_code == 500
    sentry_sdk.flush()
    events = [item.payload.json for envelope in sentry for item in envelope.items if item.type == "event"]
    assert len(events) == 1
    report = str(events[0])
    assert "ValueError" in report
    for tenant_data in (tenant.admin.user.email, tenant.org.slug, tenant.org.name, token, "987654", tenant.kpi.name):
        assert tenant_data not in report, tenant_data
    assert set(events[0]["user"]) <= {"id"}


@pytest.mark.urls(__name__)
def test_the_sdk_itself_collects_no_cookies_headers_query_body_or_user(sentry, tenant):
    """Behind the scrubber: what the SDK's data collection gathers before `scrub` sees the event."""
    sentry_sdk.get_client().options["before_send"] = None
    client = tenant.client(tenant.admin)
    client.raise_request_exception = False
    client.cookies["tenant_note"] = "cookie-marker"
    path = f"/o/{tenant.org.slug}/fail/x/?q=query-marker"
    assert client.post(path, {"note": "body-marker"}, HTTP_X_TENANT_NOTE="header-marker").status_code == 500
    sentry_sdk.flush()
    [event] = [item.payload.json for envelope in sentry for item in envelope.items if item.type == "event"]
    collected = str({key: event["request"].get(key) for key in ("cookies", "headers", "query_string", "data")})
    for marker in ("cookie-marker", "header-marker", "query-marker", "body-marker"):
        assert marker not in collected, marker
    assert tenant.admin.user.email not in str(event.get("user"))
