"""Connector health: a source failing task_after runs in a row gives the owners of its KPIs one data-freshness task
per failing period; a good run closes it."""

from __future__ import annotations

import sqlite3

import pytest

from escalations.engine.source_tasks import advance_source_tasks
from escalations.engine.sweeps import advance_escalations
from escalations.models import Task
from governance.models import AuditEvent
from scorecards.ingestion.pulls import data_source_pull

GOOD = "select '2026-11-29T08:00:00Z' as at, 1 as value"


@pytest.fixture
def source(tenant, tmp_path, settings, monkeypatch):
    """The tenant's sql source, whose secret is not set: every run fails until `heal` points it at a SQLite file."""
    sqlite3.connect(tmp_path / "good.sqlite3").close()
    settings.PULL_FILE_GRANTS = {f"{tenant.org.slug}:{tmp_path}"}
    settings.PULL_ENV_GRANTS = {f"{tenant.org.slug}:GOOD_DSN"}
    monkeypatch.setenv("GOOD_DSN", f"sqlite:///{tmp_path / 'good.sqlite3'}")
    return tenant.data_source


def fail(source, times: int) -> None:
    for _ in range(times):
        assert data_source_pull(source=source).error.startswith("Set the organization secret")


def heal(source) -> None:
    source.config = {"dsn_env": "GOOD_DSN", "pulls": [{"kpi": source.config["pulls"][0]["kpi"], "query": GOOD}]}
    source.save()
    assert data_source_pull(source=source).error == ""


def tasks(tenant) -> list[tuple[str, int, str]]:
    return list(
        Task.objects.filter(organization=tenant.org, kind=Task.Kind.DATA_FRESHNESS)
        .order_by("pk")
        .values_list("state", "assignee_id", "kpi__key")
    )


def test_the_owner_gets_one_task_after_n_failures_in_a_row_and_a_good_run_closes_it(tenant, source):
    fail(source, 2)
    assert advance_source_tasks() == 0 and tasks(tenant) == []
    fail(source, 1)
    assert advance_source_tasks() == 1
    assert tasks(tenant) == [("open", tenant.kpi.owner_id, tenant.kpi.key)]
    fail(source, 2)  # still the same failing period: no second task
    assert advance_source_tasks() == 0 and advance_escalations().escalated == 0
    assert len(tasks(tenant)) == 1
    assert AuditEvent.objects.filter(verb="data_source.tasks_opened").count() == 1

    heal(source)
    advance_source_tasks()
    assert tasks(tenant) == [("done", tenant.kpi.owner_id, tenant.kpi.key)]


def test_a_new_failing_period_gets_a_new_task(tenant, source):
    fail(source, 3)
    advance_source_tasks()
    heal(source)
    advance_source_tasks()
    source.config["dsn_env"], source.config["dsn_secret"] = None, "warehouse_dsn"
    source.save()
    fail(source, 3)
    assert advance_source_tasks() == 1
    assert [state for state, *_ in tasks(tenant)] == ["done", "open"]


def test_n_is_a_setting_of_the_source(tenant, source):
    source.task_after = 1
    source.save()
    fail(source, 1)
    assert advance_source_tasks() == 1


def test_a_sweep_for_one_organization_leaves_the_others_alone(tenant, stranger_tenant, source):
    fail(source, 3)
    assert advance_source_tasks(org_id=stranger_tenant.org.pk) == 0
    assert tasks(tenant) == [] and tasks(stranger_tenant) == []
    fail(stranger_tenant.data_source, 3)
    assert advance_source_tasks(org_id=stranger_tenant.org.pk) == 1
    assert tasks(tenant) == [] and tasks(stranger_tenant)[0][1] == stranger_tenant.kpi.owner_id
