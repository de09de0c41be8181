"""KPIs that took a measurement before measurements were bounded may hold a newest time in year 0 (which psycopg
cannot read, so every page and sweep batch holding the KPI failed) or a value that is not finite (which JSON
cannot hold). Both are forgotten: the next evaluation sets them again from the readable points."""

from django.db import migrations
from django.db.models import Q

EPOCH = "1970-01-01T00:00:00+00:00"


def forget(apps, schema_editor):
    # manage.py runs every command, migrate included, in the system scope: every organization's KPIs.
    Kpi = apps.get_model("scorecards", "Kpi")
    Kpi.objects.filter(last_measured_at__lt=EPOCH).update(last_measured_at=None)
    infinite = Q(last_value__gt=1e308) | Q(last_value__lt=-1e308)
    if schema_editor.connection.vendor == "postgresql":
        infinite |= Q(last_value=float("nan"))
    Kpi.objects.filter(infinite).update(last_value=None)


class Migration(migrations.Migration):
    dependencies = [("scorecards", "0008_data_source_secrets")]

    operations = [migrations.RunPython(forget, migrations.RunPython.noop)]
