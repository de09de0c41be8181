"""The platform a new user relies on: settings, Celery delivery, the demo seed, the page shell."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.views.defaults import server_error

from config.celery import app as celery_app
from governance.models import Heartbeat, Membership, Organization, Role
from governance.tasks import heartbeat
from tests.test_cross_tenant import _object_kwargs, org_patterns

ROOT = Path(__file__).resolve().parent.parent


def _load_production_settings(**env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    environ.update(DJANGO_SETTINGS_MODULE="config.settings.production", **env)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_with_the_default_secret():
    result = _load_production_settings()
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


def test_production_starts_with_a_real_secret():
    result = _load_production_settings(SECRET_KEY="k" * 50, API_TOKEN_KEY="t" * 50)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("key", [None, "short", "k" * 50])
def test_production_refuses_a_missing_short_or_reused_api_token_key(key):
    result = _load_production_settings(SECRET_KEY="k" * 50, **({"API_TOKEN_KEY": key} if key else {}))
    assert result.returncode != 0
    assert "Set API_TOKEN_KEY" in result.stderr


def test_every_beat_sweep_names_a_registered_task():
    celery_app.loader.import_default_modules()
    assert settings.CELERY_BEAT_SCHEDULE
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in celery_app.tasks, f"beat entry {name} names an unknown task"


def test_tasks_are_acknowledged_only_after_they_ran():
    conf = celery_app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit


@pytest.fixture
def celery_worker(transactional_db):
    """A real worker thread consuming from the configured broker (Redis in CI)."""
    with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
        yield


def test_a_real_worker_runs_the_heartbeat_sweep(celery_worker):
    assert not Heartbeat.objects.exists()
    heartbeat.delay()
    deadline = time.monotonic() + 20
    while not Heartbeat.objects.filter(name="worker").exists():
        assert time.monotonic() < deadline, "the worker never ran the heartbeat task"
        time.sleep(0.1)
    client = Client()
    assert client.get("/healthz").json()["worker"] == "ok"


def test_healthz_reports_a_stale_worker(db):
    assert Client().get("/healthz").json() == {"database": "ok", "worker": "stale", "last_heartbeat": None}


def test_seed_demo_builds_the_demo_organization_once(db):
    call_command("seed_demo")
    call_command("seed_demo")  # idempotent
    acme = Organization.objects.get(slug="acme")
    assert acme.name == "Acme Electronics" and acme.timezone == "Europe/Berlin"
    assert set(acme.teams.values_list("name", flat=True)) == {
        "Leadership",
        "Marketing",
        "Supply Chain",
        "Sales",
        "Finance",
    }
    assert set(acme.memberships.values_list("role", flat=True)) == set(Role.values)
    assert not acme.teams.filter(lead=None).exists()
    coo = Membership.objects.filter(user__email="coo@acme.test").values_list("organization__slug", flat=True)
    assert set(coo) == {"acme", "globex"}
    assert Client().login(username="ceo@acme.test", password="steerco-demo")


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)


def test_pages_have_no_inline_scripts_or_styles(tenant):
    """A strict Content-Security-Policy needs every script and style to come from a file."""
    client = tenant.client(tenant.admin)
    pages = ["/", "/login/", "/organizations/new/", "/password-reset/"]
    pages += [
        reverse(p.name, kwargs={"org_slug": tenant.org.slug, **_object_kwargs(r, tenant)}) for r, p in org_patterns()
    ]
    for url in pages:
        response = client.get(url, follow=True)
        if response.status_code == 405:
            continue  # a POST-only endpoint: it renders nothing of its own
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), f"inline <script> on {url}"
        assert not re.search(r"\sstyle=", html), f"inline style on {url}"
        assert "X-CSRFToken" in html, f"htmx requests on {url} would be sent without the CSRF token"


def test_the_switcher_lists_every_organization_of_the_user(tenant, stranger_tenant):
    Membership.objects.create(organization=stranger_tenant.org, user=tenant.executive.user, role=Role.MEMBER)
    client = tenant.client(tenant.executive)
    html = client.get(f"/o/{tenant.org.slug}/").content.decode()
    assert f'href="/o/{tenant.org.slug}/"' in html and f'href="/o/{stranger_tenant.org.slug}/"' in html
    home = client.get("/")
    assert home.status_code == 200 and stranger_tenant.org.name in home.content.decode()
    assert tenant.client(tenant.member).get("/").url == f"/o/{tenant.org.slug}/"


def test_error_pages_are_styled(tenant, rf):
    client = tenant.client(tenant.member)
    not_found = client.get("/o/acme/teams/999999/")
    assert not_found.status_code == 404 and b"Page not found" in not_found.content
    forbidden = client.get("/o/acme/members/")
    assert forbidden.status_code == 403 and b"You cannot do this" in forbidden.content
    crashed = server_error(rf.get("/"))
    assert crashed.status_code == 500 and b"Something went wrong" in crashed.content and b"app.css" in crashed.content
