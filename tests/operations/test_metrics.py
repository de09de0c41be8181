"""Metrics: request figures at /metrics, Steerco's gauges and sweep figures on the workers' endpoint, both behind
METRICS_TOKEN, and neither carrying anything of a tenant's."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config.operations.server import serve
from escalations.tasks import process_status_changes
from scorecards.models import StatusChange
from tests.operations.conftest import TOKEN
from tests.test_platform import celery_worker  # noqa: F401  (the suite's one way to run a real worker)


def samples(text: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str) -> str:
    response = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def tenant_strings(*tenants) -> set[str]:
    found = set()
    for t in tenants:
        found |= {t.org.name, t.org.slug, t.kpi.name, t.kpi.key, t.team.name}
        found |= {m.user.email for m in (t.admin, t.executive, t.member, t.lead)}
    return found


def test_the_backlog_and_a_sweep_show_in_the_workers_metrics(celery_worker, worker_endpoint, tenant, stranger_tenant):  # noqa: F811
    changed = timezone.now() - timedelta(minutes=10)
    for t in (tenant, stranger_tenant):
        StatusChange.objects.create(organization=t.org, kpi=t.kpi, old="on_track", new="off_track", changed_at=changed)
    before = samples(scrape(worker_endpoint))
    assert before[("steerco_outbox_unprocessed", ())] == 2  # both organizations', counted together
    assert before[("steerco_outbox_oldest_age_seconds", ())] >= 600
    task = ("task", "escalations.tasks.process_status_changes")
    assert ("steerco_task_duration_seconds_count", (task,)) not in before

    process_status_changes.delay()
    deadline = time.monotonic() + 20
    while StatusChange.objects.filter(processed_at=None).exists():
        assert time.monotonic() < deadline, "the worker never ran the sweep"
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    while ("steerco_task_duration_seconds_count", (task,)) not in (after := samples(scrape(worker_endpoint))):
        assert time.monotonic() < deadline, "the sweep's figures never reached the metrics"
        time.sleep(0.1)

    assert after[("steerco_outbox_unprocessed", ())] == 0
    assert after[("steerco_outbox_oldest_age_seconds", ())] == 0
    assert after[("steerco_task_duration_seconds_count", (task,))] == 1
    assert after[("steerco_task_duration_seconds_sum", (task,))] > 0
    assert after[("steerco_task_failures_total", (task,))] == 0
    assert after[("steerco_task_last_success_timestamp_seconds", (task,))] == pytest.approx(time.time(), abs=30)
    # The delivery it queued may have reported too: only this sweep's counts are asserted.
    swept = {
        labels: value
        for (name, labels), value in after.items()
        if name == "steerco_sweep_items_total" and dict(labels)["task"] == task[1]
    }
    assert sum(swept.values()) >= 2  # two status changes processed, whatever the sweep calls its counts


def test_metrics_carry_no_tenant_names_or_emails(worker_endpoint, tenant, stranger_tenant):
    for t in (tenant, stranger_tenant):
        assert tenant.client(t.admin).get(f"/o/{t.org.slug}/").status_code in (200, 302)
    web = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert web.status_code == 200
    for body in (web.content.decode(), scrape(worker_endpoint)):
        leaked = {s for s in tenant_strings(tenant, stranger_tenant) if s in body}
        assert not leaked, leaked


def test_request_rates_and_latencies_per_view(metrics_on, tenant):
    client = tenant.client(tenant.member)
    url = f"/o/{tenant.org.slug}/"
    client.get(url)
    view = client.get(url).resolver_match.view_name
    key = ("steerco_http_requests_total", (("method", "GET"), ("status", "2xx"), ("view", view)))
    before = samples(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    client.get(url)
    after = samples(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert after[key] == before[key] + 1
    latency = ("steerco_http_request_duration_seconds_count", (("method", "GET"), ("view", view)))
    assert after[latency] == before[latency] + 1


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
def test_metrics_need_the_token(worker_endpoint, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    assert httpx.get(worker_endpoint, headers=headers, timeout=10).status_code == 401
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = Client().get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_metrics_are_off_without_a_token(settings, db):
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    with pytest.raises(ValueError, match="METRICS_TOKEN"):
        serve(address="127.0.0.1", port=0)
