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
from cryptography.fernet import Fernet
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.views.defaults import server_error

from config.celery import app as celery_app
from config.settings.base import DEFAULT_SECRETS_KEY
from governance.models import Heartbeat, Membership, Role
from governance.tasks import heartbeat
from tests.conftest import worker_settled
from tests.test_cross_tenant import _object_kwargs, org_patterns

ROOT = Path(__file__).resolve().parent.parent
FERNET_KEY = Fernet.generate_key().decode()


def _load_production_settings(check: str = "print(settings.DEBUG)", **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    environ.update(DJANGO_SETTINGS_MODULE="config.settings.production", **env)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); from django.conf import settings; {check}",
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
    result = _load_production_settings(SECRET_KEY="k" * 50, API_TOKEN_KEY="t" * 50, SECRETS_KEYS=FERNET_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("demo_data, installed", [({}, "False False"), ({"DEMO_DATA": "true"}, "True True")])
def test_production_has_no_demo_to_seed_unless_asked(demo_data, installed):
    """Docker Compose's try-it-out stack asks for the demo (DEMO_DATA); a real installation has none."""
    result = _load_production_settings(
        "from django.core.management import get_commands; "
        "print('demo' in settings.INSTALLED_APPS, 'seed_demo' in get_commands())",
        SECRET_KEY="k" * 50,
        API_TOKEN_KEY="t" * 50,
        SECRETS_KEYS=FERNET_KEY,
        **demo_data,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == installed


@pytest.mark.parametrize(
    "keys", [None, f"{FERNET_KEY},{DEFAULT_SECRETS_KEY}", "k" * 44], ids=["unset", "development key", "not a key"]
)
def test_production_refuses_to_encrypt_secrets_with_the_development_key(keys):
    result = _load_production_settings(
        SECRET_KEY="k" * 50, API_TOKEN_KEY="t" * 50, **({"SECRETS_KEYS": keys} if keys else {})
    )
    assert result.returncode != 0
    assert "Set SECRETS_KEYS" in result.stderr


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
    """A real worker thread consuming from the configured broker (Redis in CI). Messages earlier tests queued
    without a worker would otherwise run first, against rows that no longer exist, while this test sets up."""
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
        yield
        worker_settled()


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


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style[\s>]|\sstyle=", re.I)
# What htmx can only do with eval: hx-on handlers, js:/javascript: values, event filters (`click[ctrlKey]`).
HTMX_EVAL = re.compile(
    r"hx-on[:-]|hx-(vals|vars|headers)=[\"']\s*(js|javascript):|hx-trigger=\"(?:[^\"]*[\s,])?(?!(?:from|target):)[\w.:-]+\[",
    re.I,
)


def assert_strict_csp(response, url: str) -> None:
    policy = response.headers.get("Content-Security-Policy", "")
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in policy.split(";") if d.strip())
    assert directives.get("script-src") == "'self'" and directives.get("style-src") == "'self'", (url, policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (url, policy)
    assert directives.get("object-src") == "'none'" and directives.get("frame-ancestors") == "'none'", (url, policy)


def template_files() -> list[Path]:
    dirs = [Path(d) for engine in settings.TEMPLATES for d in engine["DIRS"]]
    dirs += [ROOT / app / "templates" for app in ("governance", "scorecards", "dependencies", "escalations")]
    return sorted(f for d in dirs if d.is_dir() for f in d.rglob("*.html"))


def test_no_template_holds_inline_scripts_styles_or_eval_only_htmx():
    """The CSP forbids inline code, and htmx runs with allowEval off: neither may creep back into a template."""
    files = template_files()
    assert len(files) > 40
    for path in files:
        text = path.read_text()
        assert not INLINE_SCRIPT.search(text), f"inline <script> in {path}"
        assert not INLINE_STYLE.search(text), f"inline style in {path}"
        assert not re.search(r"\son[a-z]+=", text), f"inline event handler in {path}"
        assert not HTMX_EVAL.search(text), f"htmx attribute that needs eval in {path}"


def test_htmx_runs_with_eval_off_and_the_indicator_styles_in_a_file():
    html = (ROOT / "templates" / "base.html").read_text()
    config = re.search(r'<meta name="htmx-config" content=\'([^\']+)\'>', html)
    assert config, "base.html configures htmx"
    assert '"allowEval": false' in config[1] and '"includeIndicatorStyles": false' in config[1]
    assert ".htmx-indicator" in (ROOT / "static" / "css" / "app.css").read_text()


def test_pages_have_no_inline_scripts_or_styles(tenant):
    """A strict Content-Security-Policy needs every script and style to come from a file; every page sends it."""
    client = tenant.client(tenant.admin)
    pages = ["/", "/login/", "/organizations/new/", "/password-reset/"]
    # A manual KPI's pages exist only for a manual KPI.
    manual = {"kpi_id": tenant.manual_value.kpi_id}
    pages += [
        reverse(
            name,
            kwargs={
                "org_slug": tenant.org.slug,
                **_object_kwargs(r, tenant),
                **(manual if name in ("escalations:manual_values", "escalations:manual_value_enter") else {}),
            },
        )
        for r, name in org_patterns()
    ]
    for url in pages:
        response = client.get(url, follow=True)
        if response.status_code == 405:
            continue  # a POST-only endpoint: it renders nothing of its own
        assert response.status_code == 200, url
        assert_strict_csp(response, url)
        if not response["Content-Type"].startswith("text/html"):
            continue  # a download (CSV, PDF): no markup to check
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), f"inline <script> on {url}"
        assert not INLINE_STYLE.search(html), f"inline style on {url}"
        assert not HTMX_EVAL.search(html), f"htmx attribute that needs eval on {url}"
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
