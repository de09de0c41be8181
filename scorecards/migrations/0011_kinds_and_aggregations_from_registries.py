# Data source kinds and aggregations are listed once, in scorecards.connectors.registry and
# scorecards.aggregations: the kind loses its fixed choices (the manifest checks it against the registry),
# and an aggregation's name may be longer than four letters. Neither changes the stored rows.

import scorecards.aggregations
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scorecards", "0010_names_are_one_line"),
    ]

    operations = [
        migrations.AlterField(
            model_name="datasource",
            name="kind",
            field=models.CharField(max_length=20),
        ),
        migrations.AlterField(
            model_name="kpi",
            name="aggregate_fn",
            field=models.CharField(
                choices=scorecards.aggregations.aggregation_choices, default="last", max_length=32
            ),
        ),
    ]
