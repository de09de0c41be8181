"""The web as deployed: gunicorn with config/gunicorn.py loads the application once, in its master, then forks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.test import override_settings

from governance.models import Scope
from governance.services.api_tokens import api_token_create
from tests.conftest import RUNTIME_ROLE, WEB_ROLE
from tests.factories import KpiFactory
from tests.governance.test_rls import production
from tests.scorecards.evaluation.test_sweep_celery import subprocess_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
# What the master holds once config.wsgi is loaded, printed by a process that loads it the same way.
LOADED = """
import sys
import config.wsgi
from pathlib import Path
from django.db import connections
from django.template import engines
engine = engines["django"].engine
cached = {name for loader in engine.template_loaders for inner in loader.loaders for name in inner.get_template_cache}
ours = {str(p.relative_to(d)) for d in map(Path, engine.dirs) for p in d.rglob("*.html")}
print(len(ours), len(ours - cached), "scorecards.views" in sys.modules)
print(sum(c.connection is not None for c in connections.all(initialized_only=True)))
"""


@pytest.fixture(autouse=True)
def _needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("production settings run on PostgreSQL")


def web_env() -> dict:
    url = subprocess_database_url().replace(f"assume_role={RUNTIME_ROLE}", f"assume_role={WEB_ROLE}")
    return production(url) | {"ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "WARNING"}


def test_the_loaded_application_has_its_views_and_templates_ready_and_no_connection_to_hand_down():
    """Forked workers inherit everything the master loaded, a database socket included, which two processes must
    never share: the master keeps none open."""
    loaded = subprocess.run(
        [sys.executable, "-c", LOADED], cwd=ROOT, env=web_env(), capture_output=True, text=True, timeout=60
    )
    assert loaded.returncode == 0, loaded.stderr
    templates, uncompiled, views = loaded.stdout.split("\n")[0].split()
    assert int(templates) > 50 and uncompiled == "0" and views == "True"
    assert loaded.stdout.split("\n")[1] == "0"


def test_workers_forked_from_the_loaded_application_answer_at_once_each_on_its_own_connection(tenant):
    KpiFactory(organization=tenant.org, key="sales.revenue")
    env = web_env()
    with override_settings(API_TOKEN_KEY=env["API_TOKEN_KEY"]):  # a token the server knows
        _, token = api_token_create(org=tenant.org, actor=None, name="gunicorn", scopes=[Scope.READ])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "gunicorn", "-c", "python:config.gunicorn", "config.wsgi", "-w", "2"]
    server = subprocess.Popen(
        [*command, "-b", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        with ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(lambda _: httpx.get(f"{base}/api/v1/kpis", headers=headers, timeout=30), range(40))
            )
        assert [r.status_code for r in responses] == [200] * 40
        assert all("sales.revenue" in {kpi["key"] for kpi in r.json()} for r in responses)
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert "Traceback" not in errors, errors
