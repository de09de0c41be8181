# Nullable, so the previous release, still running during a rolling upgrade, inserts organizations without it.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0015_organization_raw_measurement_days"),
    ]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="admin_missing_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
