"""Backups that restore, and a customer who leaves (docs/operations.md)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from config.operations.organizations import export_organization
from governance.models import AuditEvent, Membership, Organization, User
from scorecards.models import Kpi, Measurement

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, database: str) -> str:
    """manage.py in its own process against `database`, as an operator runs it."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{database}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def facts(database: str, slugs: list[str]) -> dict[str, dict]:
    """What must survive, per organization: the manifest, every row (the measurement count, the audit log's last
    row among them)."""
    found = {}
    for slug in slugs:
        rows = json.loads(manage("export_organization", "--org", slug, database=database))
        audit = [r for r in rows if r["model"] == "governance.auditevent"]
        found[slug] = {
            "manifest": manage("export_manifest", "--org", slug, database=database),
            "measurements": sum(r["model"] == "scorecards.measurement" for r in rows),
            "last audit row": max(audit, key=lambda r: r["pk"]) if audit else None,
            "rows": rows,
        }
    return found


@pytest.mark.postgres
def test_a_backup_restores_every_organization(transactional_db, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the restore drill needs PostgreSQL")
    call_command("seed_demo")
    slugs = sorted(Organization.objects.values_list("slug", flat=True))
    assert len(slugs) >= 2 and Measurement.objects.exists() and AuditEvent.objects.exists()
    source = connection.settings_dict["NAME"]
    before = facts(source, slugs)
    assert any(f["measurements"] for f in before.values()) and any(f["last audit row"] for f in before.values())

    dump = tmp_path / "steerco.dump"
    manage("backup", "--output", str(dump), database=source)
    fresh = f"{source}_restored"
    admin = ["--host", connection.settings_dict["HOST"] or "127.0.0.1", "--username", connection.settings_dict["USER"]]
    subprocess.run(["dropdb", *admin, "--if-exists", fresh], check=True)
    subprocess.run(["createdb", *admin, fresh], check=True)
    try:
        manage("restore", str(dump), database=fresh)
        after = facts(fresh, slugs)
        with pytest.raises(AssertionError, match="not empty"):
            manage("restore", str(dump), database=fresh)  # never over a database in use
    finally:
        subprocess.run(["dropdb", *admin, "--if-exists", fresh], check=True)
    for slug in slugs:
        assert after[slug] == before[slug], slug


def test_the_embedded_database_backs_up_to_a_file(transactional_db, tmp_path, tenant):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's backup")
    path = tmp_path / "steerco.sqlite3"
    call_command("backup", output=path)
    with sqlite3.connect(path) as copy:
        assert copy.execute("SELECT slug FROM governance_organization").fetchall() == [(tenant.org.slug,)]


def test_an_export_holds_every_row_of_the_organization_and_none_of_another(tenant, stranger_tenant):
    rows = json.loads(export_organization(tenant.org))
    kpis = {r["pk"] for r in rows if r["model"] == "scorecards.kpi"}
    assert kpis == set(Kpi.objects.filter(organization=tenant.org).values_list("pk", flat=True))
    emails = {r["fields"]["email"] for r in rows if r["model"] == "governance.user"}
    assert tenant.admin.user.email in emails and stranger_tenant.admin.user.email not in emails
    assert all(r["fields"].get("organization", tenant.org.pk) == tenant.org.pk for r in rows)


def test_deleting_an_organization_keeps_its_audit_log_only(tenant, stranger_tenant):
    audit = AuditEvent.objects.filter(organization=tenant.org).count()
    assert audit
    stranger_rows = export_organization(stranger_tenant.org)
    call_command("delete_organization", org=tenant.org.slug, confirm=tenant.org.slug)

    org = Organization.objects.get(pk=tenant.org.pk)
    assert org.slug == f"deleted-{org.pk}" and tenant.org.name not in org.name
    assert (
        not Membership.objects.filter(organization=org).exists() and not Kpi.objects.filter(organization=org).exists()
    )
    assert AuditEvent.objects.filter(organization=org).count() == audit
    assert not User.objects.filter(email=tenant.member.user.email).exists()
    assert export_organization(stranger_tenant.org) == stranger_rows
