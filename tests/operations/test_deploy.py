"""The operator's files in deploy/: alert rules and the dashboard name only metrics Steerco exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.operations.conftest import TOKEN

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "steerco-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "steerco-dashboard.json"
SUFFIXES = {"counter": ["_total"], "summary": ["_count", "_sum"], "histogram": ["_bucket", "_count", "_sum"]}
METRIC = re.compile(r"\bsteerco_[a-z_]+\b")


def exposed(text: str) -> set[str]:
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES.get(family.type, [""])
    }


@pytest.fixture
def metric_names(worker_endpoint) -> set[str]:
    web = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    worker = httpx.get(worker_endpoint, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    return exposed(web) | exposed(worker)


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def test_the_alerts_cover_backlog_sweeps_and_deliveries_and_are_complete():
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {"SteercoOutboxBacklogGrowing", "SteercoSweepLate", "SteercoDeliveriesFailing"} <= names
    for rule in rules:
        assert rule["expr"].strip() and rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["annotations"]["summary"], rule["alert"]


@pytest.mark.parametrize("source", ["alert rules", "dashboard"])
def test_every_metric_named_is_one_steerco_exposes(metric_names, source):
    queries = [rule["expr"] for rule in alert_rules()] if source == "alert rules" else dashboard_queries()
    named = {name for query in queries for name in METRIC.findall(query)}
    assert named and not named - metric_names, named - metric_names


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian's prometheus package) is not installed")
def test_promtool_accepts_the_rules():
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
