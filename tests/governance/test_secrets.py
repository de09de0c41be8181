"""Organization secrets: set by admins on the page and through the API, stored encrypted, never shown back,
audited by name and fingerprint, and readable only in their own organization's scope."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import ProgrammingError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from governance import tenancy
from governance.models import AuditEvent, Secret
from governance.secrets import SecretMissing
from governance.selectors import secret_value, secrets_remembered
from governance.services.api_tokens import api_token_create
from governance.services.secrets import secret_set
from scorecards.models import DataSource

pytestmark = pytest.mark.django_db
VALUE = "postgres://reader:hunter2-not-for-your-eyes@warehouse.acme.test/kpis"


def page(tenant) -> str:
    return reverse("governance:secrets", kwargs={"org_slug": tenant.org.slug})


def value_of(org, name: str) -> str:
    with tenancy.scope(organization=org.pk):
        return secret_value(org=org, name=name)


def stored(org) -> list[Secret]:
    with tenancy.scope(organization=org.pk):
        return list(Secret.objects.filter(organization=org))


def api(tenant, method: str, path: str, body: dict | None = None, token: str | None = None):
    return getattr(Client(), method)(
        f"/api/v1/{path}",
        data=json.dumps(body) if body is not None else None,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token or tenant.token}",
    )


# --- the page ---------------------------------------------------------------------------------------


def test_an_admin_sets_a_secret_on_the_page_and_never_sees_it_again(tenant):
    client = tenant.client(tenant.admin)
    response = client.post(page(tenant), {"name": "warehouse_dsn", "value": VALUE}, follow=True)
    html = response.content.decode()
    [secret] = stored(tenant.org)
    assert "hunter2" not in html and VALUE not in html
    assert f"fingerprint <code>{secret.fingerprint}</code>" in html and "Used by data source warehouse" in html
    assert "hunter2" not in client.get(page(tenant)).content.decode()
    assert value_of(tenant.org, "warehouse_dsn") == VALUE
    assert b"hunter2" not in bytes(secret.ciphertext)  # encrypted at rest
    event = AuditEvent.objects.get(verb="secret.set")
    assert event.actor == tenant.admin.user and event.after == {
        "name": "warehouse_dsn",
        "fingerprint": secret.fingerprint,
    }


def test_replacing_a_secret_is_audited_with_both_fingerprints_and_no_value(tenant):
    client = tenant.client(tenant.admin)
    client.post(page(tenant), {"name": "warehouse_dsn", "value": VALUE})
    old = stored(tenant.org)[0].fingerprint
    client.post(page(tenant), {"name": "warehouse_dsn", "value": VALUE + "2"})
    [secret] = stored(tenant.org)
    assert secret.fingerprint != old and value_of(tenant.org, "warehouse_dsn") == VALUE + "2"
    event = AuditEvent.objects.get(verb="secret.replaced")
    assert (event.before, event.after) == (
        {"fingerprint": old},
        {"name": "warehouse_dsn", "fingerprint": secret.fingerprint},
    )
    assert not any("hunter2" in json.dumps([e.before, e.after]) for e in AuditEvent.objects.all())


def test_the_fingerprint_is_keyed_not_a_plain_hash_of_the_value(tenant, settings):
    with tenancy.scope(organization=tenant.org.pk):
        first = secret_set(org=tenant.org, actor=None, name="token", value="1234").fingerprint
        settings.SECRET_KEY = "another-installation-another-key-xxxxxxxxxxxx"
        second = secret_set(org=tenant.org, actor=None, name="token", value="1234").fingerprint
    assert first != second  # a guess cannot be tested against a fingerprint without the server's key
    assert hashlib.sha256(b"1234").hexdigest()[:8] not in (first, second)


def test_a_bad_name_or_an_empty_value_is_refused_on_the_form(tenant):
    client = tenant.client(tenant.admin)
    response = client.post(page(tenant), {"name": "Warehouse DSN", "value": ""})
    html = response.content.decode()
    assert response.status_code == 422
    assert "Use 1-64 lowercase letters" in html and "This field is required" in html
    assert stored(tenant.org) == []


@pytest.mark.parametrize("role", ["executive", "member", "lead"])
def test_only_admins_reach_the_secrets_page(tenant, role):
    client = tenant.client(getattr(tenant, role))
    assert client.get(page(tenant)).status_code == 403
    assert client.post(page(tenant), {"name": "x", "value": "planted"}).status_code == 403
    assert stored(tenant.org) == []


def test_a_secret_a_source_names_cannot_be_deleted_and_the_page_says_which(tenant):
    with tenancy.scope(organization=tenant.org.pk):
        secret_set(org=tenant.org, actor=tenant.admin.user, name="warehouse_dsn", value=VALUE)
    client = tenant.client(tenant.admin)
    delete = reverse("governance:secret_delete", kwargs={"org_slug": tenant.org.slug, "name": "warehouse_dsn"})
    html = client.post(delete, follow=True).content.decode()
    assert "is still used by data source warehouse" in html and len(stored(tenant.org)) == 1

    DataSource.objects.filter(pk=tenant.data_source.pk).update(config={"dsn_secret": "other_dsn"})
    client.post(delete)
    assert stored(tenant.org) == []
    assert AuditEvent.objects.get(verb="secret.deleted").before["name"] == "warehouse_dsn"


# --- the API --------------------------------------------------------------------------------------


def test_an_organization_token_sets_lists_and_deletes_secrets_but_never_reads_a_value(tenant):
    put = api(tenant, "put", "secrets/crm_token", {"value": "Bearer s3cr3t"})
    assert put.status_code == 200, put.content
    body = put.json()
    assert body["name"] == "crm_token" and body["set_by"] is None and "value" not in body
    listed = api(tenant, "get", "secrets").json()
    assert [s["name"] for s in listed] == ["crm_token"] and listed[0]["fingerprint"] == body["fingerprint"]
    assert b"s3cr3t" not in put.content + api(tenant, "get", "secrets").content
    assert value_of(tenant.org, "crm_token") == "Bearer s3cr3t"

    assert api(tenant, "delete", "secrets/crm_token").status_code == 204
    assert api(tenant, "get", "secrets").json() == []
    assert api(tenant, "delete", "secrets/crm_token").status_code == 404


def test_the_api_refuses_to_delete_a_secret_a_source_names(tenant):
    api(tenant, "put", "secrets/warehouse_dsn", {"value": VALUE})
    response = api(tenant, "delete", "secrets/warehouse_dsn")
    assert response.status_code == 409
    assert "still used by data source warehouse" in response.json()["errors"][0]["message"]
    assert api(tenant, "get", "secrets").json()[0]["used_by"] == ["data source warehouse"]


def test_a_members_personal_token_may_not_touch_secrets(tenant):
    for method, path, body in [("get", "secrets", None), ("put", "secrets/x", {"value": "planted"})]:
        response = api(tenant, method, path, body, token=tenant.personal_token)
        assert response.status_code == 403
    assert stored(tenant.org) == []


def test_an_admins_personal_token_is_recorded_as_who_set_the_secret(tenant):
    _, token = api_token_create(org=tenant.org, actor=None, name="admin", membership=tenant.admin)
    body = api(tenant, "put", "secrets/crm_token", {"value": "x" * 10}, token=token).json()
    assert body["set_by"] == tenant.admin.user.email


def test_a_bad_name_is_a_422_with_its_path(tenant):
    response = api(tenant, "put", "secrets/Not%20A%20Name", {"value": "x"})
    assert response.status_code == 422 and response.json()["errors"][0]["path"] == "name"


# --- the wall -------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_secret_is_invisible_outside_its_organizations_scope(tenant, stranger_tenant):
    if connection.vendor != "postgresql":
        pytest.skip("row-level security is PostgreSQL's")
    secret = tenant.secret
    for outside in [
        {"organization": stranger_tenant.org.pk},
        {"system": True},  # the beat's sweeps and operators' commands
        {},
    ]:
        with tenancy.scope(**outside):
            assert not Secret.objects.filter(pk=secret.pk).exists(), outside
            with connection.cursor() as cursor:  # raw SQL is no way around it
                cursor.execute("SELECT count(*) FROM governance_secret")
                assert cursor.fetchone() == (0,)
            with pytest.raises(SecretMissing):
                secret_value(org=tenant.org, name=secret.name)
    with tenancy.scope(organization=stranger_tenant.org.pk):
        assert Secret.objects.filter(pk=secret.pk).update(ciphertext=b"x") == 0
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            Secret.objects.create(organization=tenant.org, name="planted", ciphertext=b"x", fingerprint="x")
    assert value_of(tenant.org, secret.name) == "token-of-acme"


# --- keys -----------------------------------------------------------------------------------------


def test_rotating_keys_keeps_every_secret_readable_under_the_new_key_alone(tenant, stranger_tenant, settings):
    old, new = settings.SECRETS_KEYS[0], Fernet.generate_key().decode()
    tenant.secret, stranger_tenant.secret  # noqa: B018
    settings.SECRETS_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert out.getvalue().strip() == "Re-encrypted 2 secret(s) with the first key of SECRETS_KEYS."
    settings.SECRETS_KEYS = [new]
    assert value_of(tenant.org, "crm_token") == "token-of-acme"
    assert value_of(stranger_tenant.org, "crm_token") == "token-of-globex"

    settings.SECRETS_KEYS = [old]  # a key that no longer decrypts: the admin learns what to set again
    with pytest.raises(SecretMissing, match=r"^Set the organization secret `crm_token` \(Administration → Secrets\)"):
        value_of(tenant.org, "crm_token")


def test_the_audit_log_keeps_the_rotation_without_values(tenant):
    tenant.secret  # noqa: B018
    call_command("rotate_secrets", stdout=io.StringIO())
    event = AuditEvent.objects.get(verb="secret.rotated")
    assert event.organization == tenant.org and event.after == {"secrets": ["crm_token"]}


def test_a_remembered_secret_is_read_once_per_block_in_its_own_scope_only(tenant, stranger_tenant):
    def put(org, value: str) -> None:
        with tenancy.scope(organization=org.pk):
            secret_set(org=org, actor=None, name="bot", value=value)

    def reads(run) -> tuple[list, int]:
        with CaptureQueriesContext(connection) as queries:
            values = run()
        return values, sum('"governance_secret"' in q["sql"] for q in queries.captured_queries)

    def outside_its_scope() -> None:
        for _ in range(2):
            with contextlib.suppress(SecretMissing):  # row-level security hides it here on PostgreSQL
                secret_value(org=tenant.org, name="bot")

    put(tenant.org, "first")
    with secrets_remembered():
        assert reads(lambda: [value_of(tenant.org, "bot") for _ in range(5)]) == (["first"] * 5, 1)
        missing, read = reads(
            lambda: [pytest.raises(SecretMissing, value_of, stranger_tenant.org, "bot") for _ in "abc"]
        )
        assert {str(m.value) for m in missing} == {str(SecretMissing("bot"))} and read == 1
        # Outside the organization's own scope nothing is remembered: the database decides, every time.
        assert reads(outside_its_scope)[1] == 2
    put(tenant.org, "rotated")
    put(stranger_tenant.org, "set since")
    with secrets_remembered():
        assert value_of(tenant.org, "bot") == "rotated" and value_of(stranger_tenant.org, "bot") == "set since"
    assert reads(lambda: [value_of(tenant.org, "bot") for _ in range(2)])[1] == 2  # no block, no memory
