from django.db import migrations

from governance.rls import protect_tables

# The system scope becomes the workers' alone (governance.rls.SYSTEM_ROLE), the probe of another organization's
# ids a function of the owner's, and security events of no organization writable in any scope.


def forwards(apps, schema_editor):
    protect_tables(schema_editor, [apps.get_model("governance", "AuditEvent")])


class Migration(migrations.Migration):
    dependencies = [("governance", "0006_row_level_security")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
