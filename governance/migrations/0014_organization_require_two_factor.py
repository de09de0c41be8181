# The database default lets the previous release, still running during a rolling upgrade, insert organizations.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0013_scim_groups"),
    ]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="require_two_factor",
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
