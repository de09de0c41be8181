"""Data sources read their credentials from their organization's secrets; the workers' environment only where
the operator granted a variable to the organization (issue: one tenant could read another's warehouse DSN and
Steerco's WEBHOOK_KEY by naming them)."""

from __future__ import annotations

import importlib

import pytest
from django.test import Client
from django.urls import reverse

from governance import tenancy
from governance.manifest.engine import export_manifest
from governance.services.secrets import secret_set
from scorecards import tasks
from scorecards.models import DataSource, DataSourceRun, Measurement
from tests.scorecards.ingestion.test_pulls import http_source, rows

pytestmark = pytest.mark.django_db
TOKEN = "Bearer s3cr3t-crm-token"
migration = importlib.import_module("scorecards.migrations.0008_data_source_secrets")


def pull(source: DataSource) -> DataSourceRun:
    """What the worker does: the pull task, in the source's organization's scope."""
    tasks.pull_data_source(source.organization_id, source.pk)
    return DataSourceRun.objects.filter(source=source).latest("started_at")


def source_page(tenant, source: DataSource, membership=None) -> str:
    url = reverse("scorecards:data_source", kwargs={"org_slug": tenant.org.slug, "source_id": source.pk})
    return tenant.client(membership or tenant.admin).get(url).content.decode()


def test_a_pull_sends_its_organizations_secret_as_the_header(tenant, json_server):
    with tenancy.scope(organization=tenant.org.pk):
        secret_set(org=tenant.org, actor=tenant.admin.user, name="crm_token", value=TOKEN)
    source = http_source(tenant.org, json_server, config={"headers_secret": {"Authorization": "crm_token"}})
    json_server.answer("/kpis", rows(("2026-11-29T08:00:00Z", 3)))
    run = pull(source)
    assert (run.error, run.rows) == ("", 1)
    assert json_server.requests[0][1]["Authorization"] == TOKEN
    assert Measurement.objects.filter(kpi=tenant.kpi).count() == 1


def test_a_source_never_reads_another_organizations_secret(tenant, stranger_tenant, json_server):
    with tenancy.scope(organization=tenant.org.pk):
        secret_set(org=tenant.org, actor=None, name="crm_token", value=TOKEN)
    # The stranger's admin names the same secret in their own source: it is looked up in their organization.
    source = http_source(stranger_tenant.org, json_server, config={"headers_secret": {"Authorization": "crm_token"}})
    run = pull(source)
    assert run.error == "Set the organization secret `crm_token` (Administration → Secrets): it is not set"
    assert json_server.requests == []


def test_a_missing_secret_fails_the_run_and_the_page_says_what_to_set(tenant):
    run = pull(tenant.data_source)
    assert run.error == "Set the organization secret `warehouse_dsn` (Administration → Secrets): it is not set"
    admin_html = source_page(tenant, tenant.data_source)
    assert "Runs fail until the organization secret <code>warehouse_dsn</code> is set" in admin_html
    assert reverse("governance:secrets", kwargs={"org_slug": tenant.org.slug}) in admin_html
    assert "Set the organization secret `warehouse_dsn`" in admin_html  # the run's error
    member_html = source_page(tenant, tenant.data_source, tenant.member)
    assert "an admin sets it in Administration → Secrets" in member_html


@pytest.mark.parametrize(
    ("variable", "refusal"),
    [
        ("WEBHOOK_KEY", "is one of Steerco's own settings; a source never reads it"),
        (
            "GLOBEX_WAREHOUSE_DSN",
            "is not granted to acme: store the value as an organization secret (Administration → Secrets) and "
            "name it instead",
        ),
    ],
)
def test_a_source_cannot_read_a_variable_of_the_workers_nobody_granted(tenant, monkeypatch, variable, refusal):
    """The issue: without an operator's list any variable outside a short reserved list could be named."""
    monkeypatch.setenv(variable, "postgres://globex:their-password@db.globex.test/warehouse")
    DataSource.objects.filter(pk=tenant.data_source.pk).update(
        config={"dsn_env": variable, "pulls": tenant.data_source.config["pulls"]}
    )
    run = pull(tenant.data_source)
    assert run.error == f"the environment variable {variable} {refusal}"
    assert "their-password" not in source_page(tenant, tenant.data_source)


def test_a_manifest_naming_an_ungranted_variable_is_refused_through_the_api(tenant):
    doc = export_manifest(tenant.org)
    [source] = doc["data_sources"]
    source.pop("dsn_secret")
    source["dsn_env"] = "GLOBEX_WAREHOUSE_DSN"
    response = Client().put(
        "/api/v1/manifest", data=doc, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {tenant.token}"
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "data_sources[0].dsn_env"
    assert DataSource.objects.get(pk=tenant.data_source.pk).config.get("dsn_env") is None


def test_a_granted_variable_still_works_for_its_organization_only(tenant, stranger_tenant, monkeypatch, settings):
    settings.PULL_ENV_GRANTS = {"acme:WAREHOUSE_DSN"}
    monkeypatch.setenv("WAREHOUSE_DSN", "postgres://reader:pw@127.0.0.1:1/warehouse")
    pulls = tenant.data_source.config["pulls"]
    DataSource.objects.filter(pk=tenant.data_source.pk).update(config={"dsn_env": "WAREHOUSE_DSN", "pulls": pulls})
    DataSource.objects.filter(pk=stranger_tenant.data_source.pk).update(
        config={"dsn_env": "WAREHOUSE_DSN", "pulls": pulls}
    )
    assert pull(tenant.data_source).error.startswith("could not connect to the database of WAREHOUSE_DSN: ")
    assert pull(stranger_tenant.data_source).error.startswith("the environment variable WAREHOUSE_DSN is not granted")


def test_the_manifest_export_carries_secret_names_never_values(tenant):
    with tenancy.scope(organization=tenant.org.pk):
        secret_set(org=tenant.org, actor=None, name="warehouse_dsn", value="postgres://u:pw-9f8e7d@db/x")
    [source] = export_manifest(tenant.org)["data_sources"]
    assert source["dsn_secret"] == "warehouse_dsn"
    assert "pw-9f8e7d" not in str(export_manifest(tenant.org))


# --- the migration of existing sources -----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "grants", "expected"),
    [
        ({"dsn_env": "WAREHOUSE_DSN", "pulls": []}, set(), {"dsn_secret": "warehouse_dsn", "pulls": []}),
        ({"dsn_env": "WAREHOUSE_DSN"}, {"acme:WAREHOUSE_DSN"}, {"dsn_env": "WAREHOUSE_DSN"}),
        ({"dsn_env": "WAREHOUSE_DSN"}, {"globex:WAREHOUSE_DSN"}, {"dsn_secret": "warehouse_dsn"}),
        (
            {"url": "https://crm.test/kpis", "headers_env": {"Authorization": "CRM_TOKEN", "X-Tenant": "CRM_TENANT"}},
            {"acme:CRM_TENANT"},
            {
                "url": "https://crm.test/kpis",
                "headers_env": {"X-Tenant": "CRM_TENANT"},
                "headers_secret": {"Authorization": "crm_token"},
            },
        ),
        ({"dsn_env": "_9_DSN"}, set(), {"dsn_secret": "dsn"}),  # a secret name starts with a letter
        ({"dsn_secret": "warehouse_dsn"}, set(), {"dsn_secret": "warehouse_dsn"}),
    ],
)
def test_the_migration_turns_ungranted_variables_into_secret_names(config, grants, expected):
    assert migration.converted(config, "acme", grants) == expected
