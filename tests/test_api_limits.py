"""What the API does with hostile input: NUL characters in URLs, deeply nested or self-multiplying bodies, requests
with thousands of problems, and a rate limit that must hold across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
import yaml
from django.core.cache import cache
from django.test import Client

from governance.manifest.engine import export_manifest
from governance.models import AuditEvent, Invitation
from governance.services.api_tokens import api_token_create
from scorecards.models import Kpi, Measurement

ROOT = Path(__file__).resolve().parent.parent


def call(token: str, method: str, url: str, body: str | bytes | None = None, content_type="application/json"):
    return getattr(Client(), method)(url, data=body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture(autouse=True)
def _counters():
    cache.clear()  # the rate limit's


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("/api/v1/kpis?q=%00", "q"),
        ("/api/v1/kpis/a%00b", "path"),
        ("/api/v1/kpis/a%00b/measurements", "path"),
        ("/api/v1/workstreams?kpi=ops%00", "kpi"),
        ("/api/v1/tasks?assignee=%00&state=open", "assignee"),
        ("/api/v1/tasks?kind=a%00", "kind"),
        ("/api/v1/notifications?recipient=x%00@acme.test", "recipient"),
        ("/api/v1/manifest?%00=1", "\\x00"),
    ],
)
def test_a_nul_character_in_the_url_is_refused_in_the_error_shape(tenant, url, where):
    response = call(tenant.token, "get", url)
    assert response.status_code == 422
    assert response.json() == {"errors": [{"path": where, "message": "must not contain a NUL character"}]}


def test_a_page_with_a_nul_character_in_its_address_is_a_plain_400(tenant):
    response = tenant.client(tenant.executive).get("/o/acme/kpis/?q=%00")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_deeply_nested_json_is_a_client_error(tenant, depth):
    nested = "[" * depth + "]" * depth
    response = call(tenant.token, "post", "/api/v1/measurements", '{"measurements": ' + nested + "}")
    assert response.status_code in (400, 422)
    assert response.json()["errors"]
    response = call(tenant.token, "put", "/api/v1/manifest", '{"version": 1, "organization": ' + nested + "}")
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "manifest", "message": "is nested too deeply (at most 32 levels)"}]
    episode = tenant.episode
    _, personal = api_token_create(org=tenant.org, actor=None, name="lead", membership=tenant.lead)
    response = call(personal, "post", f"/api/v1/workstreams/{episode.workstream.pk}/mitigation", nested)
    assert response.status_code in (400, 422)
    assert response.json()["errors"]


def test_deeply_nested_yaml_is_refused(tenant):
    body = "version: 1\norganization: " + "[" * 3000 + "]" * 3000
    response = call(tenant.token, "put", "/api/v1/manifest", body, content_type="application/yaml")
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"] == "is nested too deeply (at most 32 levels)"


def test_a_yaml_alias_bomb_is_refused_with_a_small_answer(tenant):
    lines = ["version: 1", "organization: {slug: acme, name: Acme}", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("teams: [*a9]")
    response = call(tenant.token, "put", "/api/v1/manifest", "\n".join(lines), content_type="application/yaml")
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": "manifest", "message": "holds more than 250,000 values once its YAML aliases are expanded"}
    ]
    response = call(tenant.token, "put", "/api/v1/manifest", "a: &a [*a]", content_type="application/yaml")
    assert response.json()["errors"] == [{"path": "manifest", "message": "contains itself through a YAML alias"}]


def test_a_manifest_with_aliases_that_stay_small_still_applies(tenant):
    manifest = json.loads(json.dumps(export_manifest(tenant.org), default=str))
    twin = {**manifest["kpis"][0], "key": "ops.twin", "name": "Twin"}  # the same thresholds object: an alias
    manifest["kpis"].append(twin)
    text = yaml.safe_dump(manifest)
    assert "*id001" in text
    response = call(tenant.token, "put", "/api/v1/manifest", text, content_type="application/yaml")
    assert response.status_code == 200, response.content
    assert Kpi.objects.get(organization=tenant.org, key="ops.twin").thresholds == tenant.kpi.thresholds


def test_ten_thousand_bad_items_list_a_hundred_problems_and_count_them_all(tenant):
    items = [{"kpi": "nope", "at": "2026-11-01T00:00:00Z", "value": i} for i in range(10_000)]
    response = call(tenant.token, "post", "/api/v1/measurements", json.dumps({"measurements": items}))
    assert response.status_code == 422
    body = response.json()
    assert len(body["errors"]) == 100
    assert body["errors"][0] == {"path": "measurements[0].kpi", "message": 'unknown KPI "nope"'}
    assert body["total"] == 10_000
    assert len(response.content) < 10_000
    assert not Measurement.objects.exists()


def test_a_manifest_with_thousands_of_problems_answers_a_short_list(tenant):
    manifest = export_manifest(tenant.org)
    manifest["members"] = [{"email": f"person{i}@acme.test", "teams": ["nope"]} for i in range(3_000)]
    response = call(tenant.token, "put", "/api/v1/manifest", json.dumps(manifest, default=str))
    assert response.status_code == 422
    body = response.json()
    assert len(body["errors"]) == 100 and body["total"] >= 3_000
    assert not Invitation.objects.filter(email="person0@acme.test").exists()
    assert not AuditEvent.objects.filter(verb="manifest.applied").exists()


# --- the rate limit, shared through Redis --------------------------------------------------------------

REDIS_URL = os.environ.get("CACHE_URL", "") if os.environ.get("CACHE_URL", "").startswith("redis") else ""
COUNT = """
import sys, time, django
django.setup()
from types import SimpleNamespace
from governance.api import TokenThrottle
request = SimpleNamespace(auth=SimpleNamespace(pk=sys.argv[1]))
throttle = TokenThrottle()
time.sleep(max(0, float(sys.argv[2]) - time.time()))  # all processes start at once, to race
print(sum(throttle.allow_request(request) for _ in range(100)))
"""


def test_the_rate_limit_holds_across_processes_sharing_redis():
    url = REDIS_URL or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {url}")
    env = {**os.environ, "CACHE_URL": url, "API_RATE_LIMIT": "50/d", "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    token, start = f"test-{uuid.uuid4()}", str(time.time() + 3)  # a counter no one else shares
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", COUNT, token, start], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    allowed = [int(worker.communicate(timeout=60)[0]) for worker in workers]
    assert sum(allowed) == 50, allowed  # one limit for all: each alone would have let 50 through
