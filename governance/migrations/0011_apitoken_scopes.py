# Organization tokens get scopes. Tokens made before scopes existed could do anything in their organization, so
# they keep every scope (no integration breaks silently); tokens made from now on default to measurements:write.

from django.db import migrations, models

ALL_SCOPES = ["measurements:write", "read", "manifest:write", "admin"]


def grant_existing_tokens_every_scope(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # The table is under forced row-level security: this one transaction reads every organization's rows.
        schema_editor.execute("SELECT set_config('steerco.system', 'on', true)")
    apps.get_model("governance", "ApiToken").objects.filter(membership=None).update(scopes=ALL_SCOPES)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0010_names_are_one_line"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="scopes",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(grant_existing_tokens_every_scope, migrations.RunPython.noop),
    ]
