"""Data sources changed on their pages: the manifest's validation, the dry pull that stores nothing, pause and
resume, delete, the audit and the export; strangers and non-admins get nowhere."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from django.urls import reverse

from governance import tenancy
from governance.manifest.engine import export_manifest
from governance.models import AuditEvent
from governance.services.secrets import secret_set
from scorecards.ingestion.pulls import data_sources_claim_due
from scorecards.models import DataSource, DataSourceRun, Measurement

SHEET = b"Week,Throughput\n2026-11-23,41\n2026-11-24,44\n"


def url(tenant, name: str, source: DataSource | None = None) -> str:
    kwargs = {"org_slug": tenant.org.slug} | ({"source_id": source.pk} if source else {})
    return reverse(f"scorecards:{name}", kwargs=kwargs)


def form(tenant, json_server, **overrides) -> dict:
    settings = (
        f"url: {json_server.url('/pub')}\npulls:\n  - kpi: {tenant.kpi.key}\n    at: Week\n    value: Throughput\n"
    )
    return {"key": "targets", "kind": "spreadsheet", "every": "1h", "task_after": "3", "settings": settings} | overrides


@pytest.fixture
def sheet(json_server):
    json_server.answer("/pub", body=SHEET, content_type="text/csv")
    return json_server


def test_an_admin_creates_a_source_which_is_audited_and_exported(tenant, sheet):
    response = tenant.client(tenant.admin).post(url(tenant, "data_source_new"), form(tenant, sheet))
    source = DataSource.objects.get(organization=tenant.org, key="targets")
    assert response.status_code == 302 and response.url == url(tenant, "data_source", source)
    assert (source.kind, source.every, source.config["url"]) == ("spreadsheet", timedelta(hours=1), sheet.url("/pub"))
    event = AuditEvent.objects.get(verb="data_source.created")
    assert (event.actor_id, event.after["pulls"][0]["at"]) == (tenant.admin.user_id, "Week")
    exported = {s["key"]: s for s in export_manifest(tenant.org)["data_sources"]}
    assert exported["targets"]["pulls"] == [{"kpi": tenant.kpi.key, "at": "Week", "value": "Throughput"}]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"settings": "url: ftp://x\npulls: []"}, "url: must be an http or https address"),
        (
            {"settings": "pulls:\n  - kpi: ops.nothing\n    at: a\n    value: v\nurl: https://x.test/a.csv"},
            'pulls[0].kpi: unknown KPI "ops.nothing"',
        ),
        ({"settings": "url: [unclosed"}, "settings: is not YAML (line 1)"),
        (
            {"settings": "dsn_secret: warehouse_url", "kind": "spreadsheet"},
            "dsn_secret: is not used by kind spreadsheet",
        ),
        ({"settings": "key: other"}, "settings: key has its own field above"),
        ({"key": "Bad Key"}, "key:"),
    ],
    ids=["url", "kpi", "yaml", "other-kind", "form-field", "key"],
)
def test_the_form_refuses_what_the_manifest_refuses(tenant, sheet, overrides, problem):
    response = tenant.client(tenant.admin).post(url(tenant, "data_source_new"), form(tenant, sheet, **overrides))
    assert response.status_code == 422
    assert problem.replace('"', "&quot;") in response.content.decode()
    assert not DataSource.objects.filter(key="targets").exists()


def test_testing_the_form_shows_the_first_rows_and_stores_nothing(tenant, sheet):
    response = tenant.client(tenant.admin).post(
        url(tenant, "data_source_test"), form(tenant, sheet), HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert "<html" not in html and "Connected: 2 rows would be stored. Nothing was stored." in html
    assert "2026-11-24" in html and "44" in html
    assert not DataSource.objects.filter(key="targets").exists()
    assert not Measurement.objects.exists() and not DataSourceRun.objects.filter(source__key="targets").exists()


def test_testing_shows_the_problems_of_bad_rows_and_of_a_failing_source(tenant, sheet):
    sheet.answer("/pub", body=b"Week,Throughput\n2026-11-23,n/a\n", content_type="text/csv")
    client = tenant.client(tenant.admin)
    html = client.post(url(tenant, "data_source_test"), form(tenant, sheet), HTTP_HX_REQUEST="true").content.decode()
    assert (
        "a run would store none of them" in html and f"row 1 ({tenant.kpi.key}) value: must be a finite number" in html
    )
    sheet.answer("/pub", status=500, body=b"", content_type="text/html")
    html = client.post(url(tenant, "data_source_test"), form(tenant, sheet), HTTP_HX_REQUEST="true").content.decode()
    assert "The pull failed:</strong> 127.0.0.1 answered HTTP 500 Internal Server Error" in html
    html = client.post(url(tenant, "data_source_test"), form(tenant, sheet, every="soon"), HTTP_HX_REQUEST="true")
    assert "Fix these first:" in html.content.decode()
    assert not Measurement.objects.exists()


def test_a_saved_source_is_tested_in_place_without_a_run(tenant, sheet):
    tenant.client(tenant.admin).post(url(tenant, "data_source_new"), form(tenant, sheet))
    source = DataSource.objects.get(key="targets")
    response = tenant.client(tenant.admin).post(url(tenant, "data_source_test_saved", source), HTTP_HX_REQUEST="true")
    assert "Connected: 2 rows would be stored." in response.content.decode()
    assert not source.runs.exists() and not Measurement.objects.exists()


def test_editing_pausing_resuming_and_deleting_are_audited(tenant, sheet):
    client = tenant.client(tenant.admin)
    client.post(url(tenant, "data_source_new"), form(tenant, sheet))
    source = DataSource.objects.get(key="targets")
    page = client.get(url(tenant, "data_source_edit", source)).content.decode()
    assert "at: Week" in page and 'value="targets"' in page

    client.post(url(tenant, "data_source_edit", source), form(tenant, sheet, every="2h", task_after="5"))
    source.refresh_from_db()
    assert (source.every, source.task_after) == (timedelta(hours=2), 5)
    assert AuditEvent.objects.get(verb="data_source.updated").after["every"] == "2h"

    client.post(url(tenant, "data_source_pause", source), {"paused": "1"})
    source.refresh_from_db()
    assert source.paused_at is not None
    exported = {s["key"]: s for s in export_manifest(tenant.org)["data_sources"]}
    assert exported["targets"]["paused"] is True
    assert source.pk not in [run.source_id for run in data_sources_claim_due(now=source.paused_at + timedelta(days=1))]
    client.post(url(tenant, "data_source_pause", source), {"paused": "0"})
    source.refresh_from_db()
    assert source.paused_at is None

    client.post(url(tenant, "data_source_delete", source))
    source.refresh_from_db()
    assert source.archived_at is not None
    verbs = list(
        AuditEvent.objects.filter(verb__startswith="data_source.").order_by("pk").values_list("verb", flat=True)
    )
    assert verbs == [
        "data_source.created",
        "data_source.updated",
        "data_source.paused",
        "data_source.resumed",
        "data_source.archived",
    ]


def test_only_admins_change_sources_and_strangers_find_none(tenant, stranger_tenant, sheet):
    source = tenant.data_source
    for membership in (tenant.member, tenant.executive, tenant.lead):
        client = tenant.client(membership)
        assert client.get(url(tenant, "data_source_new")).status_code == 403
        assert client.post(url(tenant, "data_source_pause", source), {"paused": "1"}).status_code == 403
    stranger = stranger_tenant.client(stranger_tenant.admin)
    for name in ("data_source_edit", "data_source_test_saved", "data_source_pause", "data_source_delete"):
        other_org_url = reverse(
            f"scorecards:{name}", kwargs={"org_slug": stranger_tenant.org.slug, "source_id": source.pk}
        )
        assert stranger.post(other_org_url, {"paused": "1"}).status_code == 404
    source.refresh_from_db()
    assert source.paused_at is None and source.archived_at is None and not source.runs.exists()


def test_a_sql_source_is_tested_with_its_organization_secret(tenant, tmp_path, settings):
    source = tenant.data_source
    client = tenant.client(tenant.admin)
    html = client.post(url(tenant, "data_source_test_saved", source), HTTP_HX_REQUEST="true").content.decode()
    assert "Set the organization secret `warehouse_dsn` (Administration → Secrets): it is not set" in html
    path = tmp_path / "warehouse.sqlite3"
    sqlite3.connect(path).close()
    settings.PULL_FILE_GRANTS = {f"{tenant.org.slug}:{tmp_path}"}
    with tenancy.scope(organization=tenant.org.pk):  # row-level security: secrets are written in their own scope
        secret_set(org=tenant.org, actor=tenant.admin.user, name="warehouse_dsn", value=f"sqlite:///{path}")
    source.config["pulls"][0]["query"] = "select '2026-11-29T08:00:00Z' as at, 7 as value"
    source.save()
    html = client.post(url(tenant, "data_source_test_saved", source), HTTP_HX_REQUEST="true").content.decode()
    assert "Connected: 1 row would be stored." in html and str(path) not in html
    assert not source.runs.exists() and not Measurement.objects.exists()
