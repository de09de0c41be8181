from django.db import migrations

from governance.rls import protect_tables, unprotect_tables


def forwards(apps, schema_editor):
    protect_tables(schema_editor, apps.get_models(include_auto_created=True))


def backwards(apps, schema_editor):
    unprotect_tables(schema_editor, apps.get_models(include_auto_created=True))


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0005_security_events"),
        ("scorecards", "0007_kpi_schedule"),
        ("dependencies", "0001_initial"),
        ("escalations", "0008_prune_indexes"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
