"""Data sources name organization secrets instead of the workers' environment variables.

A `dsn_env` or `headers_env` variable the operator granted to the organization (PULL_ENV_GRANTS) stays; any other
becomes a reference to the organization secret of the same name in lower case (WAREHOUSE_DSN -> warehouse_dsn),
which the admin then sets: until then the source's runs fail with "Set the organization secret `warehouse_dsn`
(Administration → Secrets)". Each converted source gets an audit event naming the secrets, so the admin sees why.
"""

import re

from django.conf import settings
from django.db import migrations


def secret_name(env_name: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", env_name.lower()).lstrip("_0123456789")[:64]
    return name or "secret"


def converted(config: dict, slug: str, grants: set[str]) -> dict:
    """The source's config with every ungranted variable replaced by a secret reference."""
    config = dict(config)

    def granted(name: str) -> bool:
        return f"{slug}:{name}" in grants

    dsn = config.get("dsn_env")
    if dsn and not granted(dsn):
        del config["dsn_env"]
        config["dsn_secret"] = secret_name(dsn)
    headers = config.get("headers_env") or {}
    moved = {header: secret_name(name) for header, name in headers.items() if not granted(name)}
    if moved:
        kept = {header: name for header, name in headers.items() if header not in moved}
        config.pop("headers_env")
        if kept:
            config["headers_env"] = kept
        config["headers_secret"] = {**config.get("headers_secret", {}), **moved}
    return config


def forwards(apps, schema_editor):
    DataSource = apps.get_model("scorecards", "DataSource")
    AuditEvent = apps.get_model("governance", "AuditEvent")
    for source in DataSource.objects.select_related("organization").exclude(config={}):
        config = converted(source.config or {}, source.organization.slug, settings.PULL_ENV_GRANTS)
        if config == source.config:
            continue
        source.config = config
        source.save(update_fields=["config"])
        secrets = sorted({config.get("dsn_secret"), *config.get("headers_secret", {}).values()} - {None})
        AuditEvent.objects.create(
            organization_id=source.organization_id,
            verb="data_source.secrets_migrated",
            object_type="scorecards.datasource",
            object_id=str(source.pk),
            object_repr=source.key,
            after={"secrets": secrets, "todo": "set each in Administration → Secrets"},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("scorecards", "0007_kpi_schedule"),
        ("governance", "0009_organization_secrets"),
    ]
    # Not reversible: the variables' values never were in the database, and an environment reference is what
    # the issue removes.
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
