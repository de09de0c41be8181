"""The data sources pages (who sees and who runs what) and the freshness of data on every KPI page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.urls import reverse

from governance import tenancy
from governance.models import AuditEvent
from governance.services.secrets import secret_set
from scorecards import tasks
from scorecards.models import DataSource, DataSourceRun, Kpi
from scorecards.templatetags.kpis import freshness_state
from tests.factories import KpiFactory
from tests.scorecards.factories import DataSourceFactory, DataSourceRunFactory

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SECRET = "postgres://loader:hunter2-not-for-your-eyes@db.internal/warehouse"


def url(tenant, name: str, **kwargs) -> str:
    return reverse(name, kwargs={"org_slug": tenant.org.slug, **kwargs})


def source_url(tenant, name: str = "scorecards:data_source") -> str:
    return url(tenant, name, source_id=tenant.data_source.pk)


@pytest.fixture
def history(tenant):
    """Three finished runs of the warehouse source, the newest one failed."""
    DataSourceRun.objects.bulk_create(
        DataSourceRun(
            organization=tenant.org,
            source=tenant.data_source,
            started_at=NOW - timedelta(hours=h),
            finished_at=NOW - timedelta(hours=h) + timedelta(seconds=2),
            rows=0 if h == 1 else 24,
            error="the query for ops.throughput ran longer than 30 s and was cancelled" if h == 1 else "",
        )
        for h in (1, 2, 3)
    )
    DataSource.objects.filter(pk=tenant.data_source.pk).update(failures=1, next_run_at=NOW + timedelta(hours=1))


@pytest.mark.parametrize("role", ["admin", "executive", "member", "lead"])
def test_every_member_sees_the_sources_with_their_last_run_and_kpis(tenant, history, role):
    with tenancy.scope(organization=tenant.org.pk):
        secret_set(org=tenant.org, actor=tenant.admin.user, name="warehouse_dsn", value=SECRET)
    client = tenant.client(getattr(tenant, role))
    with time_machine.travel(NOW, tick=False):
        listing = client.get(url(tenant, "scorecards:data_sources")).content.decode()
        detail = client.get(source_url(tenant)).content.decode()
    assert "warehouse" in listing and "SQL query" in listing and "every 1h" in listing
    assert "Failing · 1 run in a row" in listing and "ran longer than 30 s and was cancelled" in listing
    assert "Throughput" in listing and 'class="freshness freshness-none"' in listing
    # the secret's name, never its value
    assert 'the organization secret <code>warehouse_dsn</code> <span class="status status-ok">set' in detail
    assert "hunter2" not in listing + detail
    assert detail.count('<td class="run-error narrow-hide">') == 3 and "select now() as at, 1 as value" in detail
    assert ("Run now" in detail) == (role == "admin")


def test_the_list_explains_push_when_there_is_no_source(tenant):
    DataSource.objects.filter(pk=tenant.data_source.pk).update(archived_at=NOW)
    html = tenant.client(tenant.member).get(url(tenant, "scorecards:data_sources")).content.decode()
    assert "No data sources" in html and "POST /api/v1/measurements" in html and "data_sources" in html


def test_the_list_needs_a_constant_number_of_queries(tenant, django_assert_max_num_queries):
    for i in range(15):
        kpi = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key=f"k.{i}")
        source = DataSourceFactory(
            organization=tenant.org,
            config={"dsn_secret": "x", "pulls": [{"kpi": kpi.key, "query": "select 1"}, {"kpi": "gone", "query": "x"}]},
        )
        DataSourceRunFactory(source=source, rows=3)
    client = tenant.client(tenant.member)
    with django_assert_max_num_queries(9):
        html = client.get(url(tenant, "scorecards:data_sources")).content.decode()
    assert html.count('class="panel source-card"') == 16 and html.count("No such KPI") == 15


@pytest.mark.parametrize("role", ["executive", "member", "lead"])
def test_only_an_admin_may_run_a_source_now(tenant, role):
    with mock.patch.object(tasks.pull_data_source, "delay") as delay:
        response = tenant.client(getattr(tenant, role)).post(source_url(tenant, "scorecards:data_source_run"))
    assert response.status_code == 403
    assert not DataSourceRun.objects.exists() and not delay.called
    assert AuditEvent.objects.filter(verb="security.permission_denied").exists()


def test_run_now_queues_a_run_and_the_page_follows_it_until_it_finishes(tenant, django_capture_on_commit_callbacks):
    client = tenant.client(tenant.admin)
    with mock.patch.object(tasks.pull_data_source, "delay") as delay, django_capture_on_commit_callbacks(execute=True):
        response = client.post(source_url(tenant, "scorecards:data_source_run"), HTTP_HX_REQUEST="true")
    run = DataSourceRun.objects.get()
    delay.assert_called_once_with(tenant.org.pk, tenant.data_source.pk, run.pk)
    html = response.content.decode()
    assert "<html" not in html and 'id="live"' in html
    assert 'hx-trigger="every 2s"' in html and "Running" in html and "Run queued" in html

    again = client.post(source_url(tenant, "scorecards:data_source_run"), HTTP_HX_REQUEST="true").content.decode()
    assert "already on its way" in again and DataSourceRun.objects.count() == 1

    tasks.pull_data_source(tenant.org.pk, tenant.data_source.pk, run.pk)  # what the worker does
    done = client.get(source_url(tenant), HTTP_HX_REQUEST="true").content.decode()
    assert "every 2s" not in done and "Failed" in done and "Set the organization secret `warehouse_dsn`" in done


def test_run_now_without_javascript_redirects_back_to_the_page(tenant):
    with mock.patch.object(tasks.pull_data_source, "delay"):
        response = tenant.client(tenant.admin).post(source_url(tenant, "scorecards:data_source_run"))
    assert response.status_code == 302 and response.url == source_url(tenant)


def test_the_runs_are_paginated(tenant):
    DataSourceRun.objects.bulk_create(
        DataSourceRun(organization=tenant.org, source=tenant.data_source, started_at=NOW - timedelta(hours=h))
        for h in range(1, 46)
    )
    with time_machine.travel(NOW, tick=False):
        html = tenant.client(tenant.member).get(source_url(tenant), {"page": 3}).content.decode()
    assert "Page 3 of 3" in html and html.count('<td class="run-error narrow-hide">') == 5
    assert html.count(">Lost</span>") == 5 and "Last run lost" in html  # none of them finished


# --- freshness ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (None, "none"),
        (timedelta(hours=3), "fresh"),
        (timedelta(days=1), "fresh"),
        (timedelta(days=1, minutes=1), "late"),
        (timedelta(days=3), "late"),
        (timedelta(days=3, minutes=1), "stale"),
    ],
)
def test_freshness_compares_the_newest_point_with_cadence_and_stale_after(age, state):
    newest = NOW - age if age is not None else None
    assert freshness_state(newest, timedelta(days=1), timedelta(days=3), NOW) == state


@pytest.mark.parametrize(
    ("age", "state", "text"),
    [
        (timedelta(hours=3), "fresh", "3 h ago"),
        (timedelta(hours=30), "late", "30 h ago"),
        (timedelta(days=5), "stale", "5 d ago"),
        (None, "none", "no data"),
    ],
)
def test_the_kpi_page_and_the_scorecard_show_the_freshness_of_the_data(tenant, age, state, text):
    Kpi.objects.filter(pk=tenant.kpi.pk).update(last_measured_at=NOW - age if age else None)
    client = tenant.client(tenant.executive)
    with time_machine.travel(NOW, tick=False):
        pages = [
            client.get(url(tenant, "scorecards:kpi_detail", kpi_id=tenant.kpi.pk)).content.decode(),
            client.get(url(tenant, "scorecards:kpi_list")).content.decode(),
            client.get(url(tenant, "scorecards:scorecard", scorecard_id=tenant.scorecard.pk)).content.decode(),
            client.get(url(tenant, "scorecards:data_sources")).content.decode(),
        ]
    for html in pages:
        assert f'class="freshness freshness-{state}"' in html
        assert f'<span class="freshness-age">{text}</span><span class="freshness-sep"> · </span>' in html
        assert '<span class="freshness-every">every 1d</span>' in html
