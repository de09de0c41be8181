# Nullable, so the previous release, still running during a rolling upgrade, inserts organizations without it.

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0014_organization_require_two_factor"),
    ]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="raw_measurement_days",
            field=models.PositiveIntegerField(
                blank=True, null=True, validators=[django.core.validators.MinValueValidator(7)]
            ),
        ),
    ]
